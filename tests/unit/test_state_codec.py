"""Detector state survives the trip to Redis bytes, nothing forged is ever unpickled, and a
blob this worker cannot use says why instead of crashing it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from framedrift.worker.detection.monitor import EventRef, SourceMonitor, SourceState, scored_images
from framedrift.worker.stream.state_codec import (
    CODEC_VERSION,
    StateCodec,
    StateNotLoadable,
    StateVerificationError,
    StateVersionMismatch,
)
from tests.detector_fixtures import feed, synthetic_config, synthetic_scores
from tests.state_blobs import pickle_naming, signed_blob

KEY = b"k" * 32
CONFIG = synthetic_config()


def busy_state(rng: np.random.Generator) -> SourceState:
    monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    feed(monitor, CONFIG, synthetic_scores(rng, 300))
    return monitor.state


def test_round_trip_gives_detectors_that_continue_identically(rng: np.random.Generator) -> None:
    state = busy_state(rng)
    restored = StateCodec(KEY).decode(StateCodec(KEY).encode(state, "src:a"), "src:a")
    assert restored.stats == state.stats
    np.testing.assert_array_equal(restored.window.values("error"), state.window.values("error"))
    continuation = synthetic_scores(rng, 300)
    continuation.error[:] *= 1.5  # drift, so that detectors fire along the way
    original, copy = SourceMonitor(CONFIG, state), SourceMonitor(CONFIG, restored)
    for offset, image in enumerate(scored_images(continuation, CONFIG.reference), start=300):
        event = EventRef(f"e{offset}", 1, offset, 1.7e9)
        assert original.update(image, event) == copy.update(image, event)
    assert original.state.detectors["adwin"].estimation == copy.state.detectors["adwin"].estimation
    assert original.state.detectors["error_cusum"] == copy.state.detectors["error_cusum"]


@pytest.mark.parametrize(
    "tamper",
    ["flip a body byte", "other key", "moved to another source", "not a blob", "forged pickle"],
)
def test_a_blob_that_fails_verification_is_refused(tamper: str, rng: np.random.Generator) -> None:
    codec = StateCodec(KEY)
    blob = codec.encode(busy_state(rng), "src:a")
    redis_key = "src:a"
    if tamper == "flip a body byte":
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    elif tamper == "other key":
        codec = StateCodec(b"x" * 32)
    elif tamper == "moved to another source":
        redis_key = "src:b"
    elif tamper == "not a blob":
        blob = b"hello"
    else:
        blob = blob[:3] + b"\0" * 32 + pickle.dumps(("os.system", "echo pwned"))
    with pytest.raises(StateVerificationError):
        codec.decode(blob, redis_key)


def test_a_signed_blob_of_the_previous_codec_version_is_never_unpickled(
    rng: np.random.Generator,
) -> None:
    # Version 1 blobs pickled the classes under their old module paths.
    body = pickle.dumps(busy_state(rng))
    blob = signed_blob(KEY, "src:a", b"fd1", body)
    with pytest.raises(StateVersionMismatch, match="fd1") as refused:
        StateCodec(KEY).decode(blob, "src:a")
    assert refused.value.reason == "codec_version"


@pytest.mark.parametrize(
    ("module", "name", "cause"),
    [
        ("framedrift.worker.detection.monitor", "RetiredSourceState", "AttributeError"),
        ("framedrift.worker.detectors.adwin", "AdwinDetector", "ModuleNotFoundError"),
    ],
    ids=["class renamed", "module moved"],
)
def test_a_signed_blob_naming_a_class_that_is_gone_is_not_loadable(
    module: str, name: str, cause: str
) -> None:
    blob = signed_blob(KEY, "src:a", CODEC_VERSION, pickle_naming(module, name))
    with pytest.raises(StateNotLoadable, match=cause) as refused:
        StateCodec(KEY).decode(blob, "src:a")
    assert refused.value.reason == "unloadable"


def test_a_signed_state_missing_a_field_is_not_loadable(rng: np.random.Generator) -> None:
    state = busy_state(rng)
    del state.window  # as if pickled before the field existed
    blob = signed_blob(KEY, "src:a", CODEC_VERSION, pickle.dumps(state))
    with pytest.raises(StateNotLoadable, match="window"):
        StateCodec(KEY).decode(blob, "src:a")
