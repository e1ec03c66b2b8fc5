"""Detector state survives the trip to Redis bytes, a blob is plain data that runs no code,
nothing forged or moved is ever read, and a blob this worker cannot use says why instead
of crashing it."""

from __future__ import annotations

import dataclasses
import json
import pickle
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from framedrift.worker.detection.adwin import Adwin
from framedrift.worker.detection.monitor import EventRef, SourceMonitor, SourceState, scored_images
from framedrift.worker.stream import state_codec
from framedrift.worker.stream.state_codec import (
    CODEC_VERSION,
    StateCodec,
    StateNotLoadable,
    StateVerificationError,
    StateVersionMismatch,
)
from tests.detector_fixtures import feed, synthetic_config, synthetic_scores
from tests.state_blobs import pickle_naming, plain_body, signed_blob

KEY = b"k" * 32
CONFIG = synthetic_config()
MAC_END = len(CODEC_VERSION) + 32


def busy_state(rng: np.random.Generator) -> SourceState:
    """A state whose detectors have all moved off their defaults: clean events, then drift."""
    monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    feed(monitor, CONFIG, synthetic_scores(rng, 300))
    drifted = synthetic_scores(rng, 120)
    drifted.error[:] *= 1.6
    drifted.prototype[:] = 0
    feed(monitor, CONFIG, drifted, start=300)
    return monitor.state


def assert_same_values(restored: Any, original: Any, where: str) -> None:
    """Attribute by attribute, arrays by value and dtype; river's helper by its own bytes."""
    if isinstance(original, np.ndarray):
        assert restored.dtype == original.dtype, where
        np.testing.assert_array_equal(restored, original, err_msg=where)
    elif type(original).__module__.startswith("river._river_rust"):  # compiled: no __dict__
        assert restored.__getstate__() == original.__getstate__(), where
    elif hasattr(original, "__dict__") and not isinstance(original, type):
        assert type(restored) is type(original), where
        assert vars(restored).keys() == vars(original).keys(), where
        for name, value in vars(original).items():
            assert_same_values(getattr(restored, name), value, f"{where}.{name}")
    elif isinstance(original, dict):
        assert list(restored) == list(original), where
        for name, value in original.items():
            assert_same_values(restored[name], value, f"{where}[{name!r}]")
    else:
        assert type(restored) is type(original), where
        assert restored == original, where


def test_every_field_of_every_detector_survives_the_round_trip(rng: np.random.Generator) -> None:
    state = busy_state(rng)
    assert any(getattr(d, "in_drift", False) for d in state.detectors.values()), "not busy"
    restored = StateCodec(KEY).decode(StateCodec(KEY).encode(state, "src:a"), "src:a")
    assert_same_values(restored, state, "state")


def test_round_trip_gives_detectors_that_continue_identically(rng: np.random.Generator) -> None:
    state = busy_state(rng)
    restored = StateCodec(KEY).decode(StateCodec(KEY).encode(state, "src:a"), "src:a")
    continuation = synthetic_scores(rng, 300)
    continuation.error[:] *= 1.5  # drift, so that detectors fire along the way
    original, copy = SourceMonitor(CONFIG, state), SourceMonitor(CONFIG, restored)
    for offset, image in enumerate(scored_images(continuation, CONFIG.reference), start=420):
        event = EventRef(f"e{offset}", 1, offset, 1.7e9)
        assert original.update(image, event) == copy.update(image, event)
    assert_same_values(copy.state, original.state, "state")


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


def test_a_blob_signed_for_a_source_id_holding_a_nul_cannot_be_spliced_onto_a_shorter_id(
    rng: np.random.Generator,
) -> None:
    """The attack of issue 12: with a separator between key and body in the signed input,
    the blob of source `camera-001\\0<pickle>` verified as source `camera-001` holding a
    body that starts with that pickle, and decoding ran it."""
    harmless_call = "cbuiltins\nlen\n(S'pwned'\ntR."  # a protocol-0 pickle: len('pwned')
    long_key = "src:camera-001\0" + harmless_call
    blob = StateCodec(KEY).encode(busy_state(rng), long_key)
    version_and_mac, body = blob[:MAC_END], blob[MAC_END:]
    spliced = version_and_mac + harmless_call.encode() + b"\0" + body
    with pytest.raises(StateVerificationError):
        StateCodec(KEY).decode(spliced, "src:camera-001")


@pytest.mark.parametrize("old_version", [b"fd1", b"fd2"])
def test_a_signed_blob_of_a_previous_codec_version_is_never_read(
    old_version: bytes, rng: np.random.Generator
) -> None:
    # Versions 1 and 2 pickled the state.
    blob = signed_blob(KEY, "src:a", old_version, pickle.dumps(busy_state(rng)))
    with pytest.raises(StateVersionMismatch, match=old_version.decode()) as refused:
        StateCodec(KEY).decode(blob, "src:a")
    assert refused.value.reason == "codec_version"


class Unpickling(BaseException):
    """Raised by a patched pickle; a BaseException, so that no `except Exception` hides it."""


def test_decoding_never_unpickles_even_a_signed_pickle(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise Unpickling("the state codec unpickled a blob")

    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    state = busy_state(rng)
    for body in (pickle_naming("os", "system"), pickle.dumps(state)):
        with pytest.raises(StateNotLoadable) as refused:
            StateCodec(KEY).decode(signed_blob(KEY, "src:a", CODEC_VERSION, body), "src:a")
        assert refused.value.reason == "unloadable"
    restored = StateCodec(KEY).decode(StateCodec(KEY).encode(state, "src:a"), "src:a")
    assert restored.stats == state.stats
    assert not hasattr(state_codec, "pickle"), "the codec module imports pickle"


Edit = Callable[[dict[str, Any], bytes], tuple[Any, bytes]]


def re_signed(blob: bytes, edit: Edit) -> bytes:
    """`blob` with its header and array bytes changed by `edit`, signed again with our key:
    what a bug, or a field changed without a version bump, would leave in Redis."""
    body = blob[MAC_END:]
    (header_size,) = struct.unpack(">I", body[:4])
    header, array_bytes = edit(json.loads(body[4 : 4 + header_size]), body[4 + header_size :])
    return signed_blob(KEY, "src:a", CODEC_VERSION, plain_body(header, array_bytes))


def changed(change: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(header: dict[str, Any], array_bytes: bytes) -> tuple[Any, bytes]:
        change(header)
        return header, array_bytes

    return edit


def set_path(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(header: dict[str, Any]) -> None:
        node = header
        for name in parents:
            node = node[name]
        node[last] = value

    return change


def delete_path(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(header: dict[str, Any]) -> None:
        node = header
        for name in parents:
            node = node[name]
        del node[last]

    return change


def truncated_adwin_window(header: dict[str, Any], array_bytes: bytes) -> tuple[Any, bytes]:
    # ADWIN is the last detector and its window the last array: cut it short.
    header["detectors"]["adwin"]["windowing"]["__ndarray__"][1][0] -= 5
    return header, array_bytes[:-5]


UNLOADABLE: dict[str, tuple[Edit, str]] = {
    "ring of the wrong dtype": (
        changed(set_path("window.signal_rings.error.__ndarray__", ["<i8", [100]])),
        "expected float64",
    ),
    "ring of the wrong shape": (
        changed(set_path("window.offset_ring.__ndarray__", ["<i8", [50, 2]])),
        r"expected int64 \[100\]",
    ),
    "an array type that is not plain data": (
        changed(set_path("window.offset_ring.__ndarray__", ["|O", [100]])),
        "not an array descriptor",
    ),
    "an extra field": (changed(set_path("stats.origin", "elsewhere")), "unexpected field"),
    "an extra field beside an array": (
        changed(set_path("window.offset_ring.note", 1)),
        "not an array descriptor",
    ),
    "a missing field": (changed(delete_path("window.event_ids")), "no field 'event_ids'"),
    "a float where an int belongs": (changed(set_path("outliers", 1.5)), "expected int"),
    "a bool where an int belongs": (changed(set_path("stats.count", True)), "expected int"),
    "a slot outside the ring": (changed(set_path("window.next_slot", 100)), "outside"),
    "a detector this code does not run": (changed(delete_path("detectors.ks")), "detectors"),
    "an ADWIN of another river version": (
        changed(set_path("detectors.adwin.river_version", "0.0.1")),
        "river 0.0.1",
    ),
    "an ADWIN window river cannot read": (truncated_adwin_window, "adwin window"),
    "bytes after the last array": (lambda h, a: (h, a + b"\0"), "bytes after"),
    "arrays cut short": (lambda h, a: (h, a[:-1]), "past the end"),
    "a header that is not an object": (lambda h, a: ([h], a), "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(UNLOADABLE))
def test_a_signed_blob_the_state_cannot_be_rebuilt_from_is_not_loadable(
    case: str, rng: np.random.Generator
) -> None:
    edit, complaint = UNLOADABLE[case]
    blob = re_signed(StateCodec(KEY).encode(busy_state(rng), "src:a"), edit)
    with pytest.raises(StateNotLoadable, match=complaint) as refused:
        StateCodec(KEY).decode(blob, "src:a")
    assert refused.value.reason == "unloadable"


def test_a_signed_body_that_is_not_the_plain_format_is_not_loadable() -> None:
    for body in (b"", b"\0\0\0\x05{not json", b"\xff\xff\xff\xff"):
        with pytest.raises(StateNotLoadable):
            StateCodec(KEY).decode(signed_blob(KEY, "src:a", CODEC_VERSION, body), "src:a")


def test_restored_arrays_are_writable_copies_that_detectors_can_update(
    rng: np.random.Generator,
) -> None:
    state = busy_state(rng)
    restored = StateCodec(KEY).decode(StateCodec(KEY).encode(state, "src:a"), "src:a")
    latent_mix = restored.detectors["latent_mix"]
    assert dataclasses.is_dataclass(latent_mix)
    assert restored.window.offset_ring.flags.writeable
    assert latent_mix.counts.flags.writeable  # type: ignore[attr-defined]
    assert isinstance(restored.detectors["adwin"], Adwin)
