"""Detector state survives the trip to Redis bytes, and nothing forged is ever unpickled."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from worker.detectors import EventRef, MonitorConfig, SourceMonitor
from worker.detectors.monitor import SourceState
from worker.state_codec import StateCodec, StateVerificationError

KEY = b"k" * 32
CONFIG = MonitorConfig(50, 10, 1e-4, 20.0, 2e-4, np.linspace(0.1, 0.5, 500), 0.49)


def busy_state(rng: np.random.Generator) -> SourceState:
    monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    for offset, error in enumerate(rng.uniform(0.1, 0.5, 300)):
        monitor.update(float(error), EventRef(f"e{offset}", 1, offset, 1.7e9))
    return monitor.state


def test_round_trip_gives_detectors_that_continue_identically(rng: np.random.Generator) -> None:
    state = busy_state(rng)
    restored = StateCodec(KEY).decode(StateCodec(KEY).encode(state, "src:a"), "src:a")
    assert restored.stats == state.stats
    np.testing.assert_array_equal(restored.window.errors(), state.window.errors())
    continuation = rng.uniform(0.3, 0.9, 300)
    original, copy = SourceMonitor(CONFIG, state), SourceMonitor(CONFIG, restored)
    for offset, error in enumerate(continuation, start=300):
        event = EventRef(f"e{offset}", 1, offset, 1.7e9)
        assert original.update(float(error), event) == copy.update(float(error), event)
    assert original.state.adwin.estimation == copy.state.adwin.estimation


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
