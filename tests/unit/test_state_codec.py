"""Detector state survives the trip to Redis bytes, and nothing forged is ever unpickled."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from framedrift.worker.detection.monitor import EventRef, SourceMonitor, SourceState, scored_images
from framedrift.worker.stream.state_codec import StateCodec, StateVerificationError
from tests.detector_fixtures import feed, synthetic_config, synthetic_scores

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
    assert original.state.adwin.estimation == copy.state.adwin.estimation
    assert original.state.error_cusum == copy.state.error_cusum


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
