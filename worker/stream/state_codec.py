"""Turns a source's detector state into bytes for Redis and back, refusing anything forged.

A blob is plain data: a JSON header of numbers, strings and array descriptors, then
the arrays' raw bytes. Decoding it builds no object a blob names and runs no code of
one; the state's classes rebuild themselves from checked fields (`plain_state.py`).

Each blob is signed: HMAC-SHA256, keyed by the `state_hmac_key` setting, over a
length-prefixed message of the codec version, the Redis key the blob is stored under
and the body, so that a blob moved to another key, relabelled with another version or
cut at another place fails. What the signature does not cover: the applied offsets
and generations beside the blobs, and age: an older blob this worker signed for a key
verifies under that key again, so whoever can write to Redis can roll a source back
to an older state of its own.

A blob starts with a version header; whenever the format or the state's fields change,
the version goes up and blobs of other versions are not read. Every way a blob can be
unusable is an `UnusableState` with a `reason`; the store restarts that source clean
instead of letting the error halt the worker.

Layout: version (3 bytes) ‖ MAC (32) ‖ body, where body = header length (4, big-endian)
‖ header (UTF-8 JSON) ‖ array bytes, in the order of the header's descriptors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from typing import Any

import numpy as np

from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.detection.plain_state import MalformedState, PlainValue, StateFields

# b"fd" and a version character. Version 2: the modules moved under `framedrift.worker`.
# Version 3: plain data instead of pickle, signed over a length-prefixed message.
CODEC_MAGIC = b"fd"
CODEC_VERSION = CODEC_MAGIC + b"3"
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER_LENGTH = struct.Struct(">I")
_KEY_LENGTH = struct.Struct(">I")
_BODY_LENGTH = struct.Struct(">Q")

# In the header, an array is an object with this one key: [dtype, shape]. No field of
# the state is called so.
_ARRAY_TAG = "__ndarray__"
# The only array types a state holds, by their explicit-byte-order names.
_ARRAY_DTYPES = {
    np.dtype(kind).str: np.dtype(kind)
    for kind in (np.bool_, np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64)
}


class UnusableState(ValueError):
    """A stored state blob this worker cannot use; its source restarts clean."""

    reason = "unusable"  # the label of `framedrift_state_resets_total`


class StateVerificationError(UnusableState):
    """A stored state blob is not one this worker signed with its key, for this Redis key."""

    reason = "signature"


class StateVersionMismatch(UnusableState):
    """A state blob written by another version of the codec; never read."""

    reason = "codec_version"


class StateNotLoadable(UnusableState):
    """A blob this worker signed that the running code cannot rebuild (a field added,
    renamed or reshaped without a version bump, another river version)."""

    reason = "unloadable"


def _signature(hmac_key: bytes, version: bytes, redis_key: str, body: bytes) -> bytes:
    """HMAC over version ‖ len(key) ‖ key ‖ len(body) ‖ body: no separator a key could hold."""
    key = redis_key.encode()
    mac = hmac.new(hmac_key, version, hashlib.sha256)
    mac.update(_KEY_LENGTH.pack(len(key)))
    mac.update(key)
    mac.update(_BODY_LENGTH.pack(len(body)))
    mac.update(body)
    return mac.digest()


class StateCodec:
    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key

    def encode(self, state: SourceState, redis_key: str) -> bytes:
        arrays: list[np.ndarray] = []
        header = json.dumps(_describe(state.to_state(), arrays), separators=(",", ":")).encode()
        body = b"".join([_HEADER_LENGTH.pack(len(header)), header, *arrays])
        return CODEC_VERSION + _signature(self._key, CODEC_VERSION, redis_key, body) + body

    def decode(self, blob: bytes, redis_key: str) -> SourceState:
        """The state in `blob`, or an `UnusableState` saying why there is none."""
        version_size = len(CODEC_VERSION)
        if not blob.startswith(CODEC_MAGIC) or len(blob) < version_size + _MAC_SIZE:
            raise StateVerificationError(f"{redis_key}: not a framedrift state blob")
        if blob[:version_size] != CODEC_VERSION:
            raise StateVersionMismatch(
                f"{redis_key}: codec version {blob[:version_size]!r}, "
                f"this worker reads {CODEC_VERSION!r}"
            )
        mac, body = blob[version_size : version_size + _MAC_SIZE], blob[version_size + _MAC_SIZE :]
        if not hmac.compare_digest(mac, _signature(self._key, CODEC_VERSION, redis_key, body)):
            raise StateVerificationError(f"{redis_key}: signature does not match")
        # Our own bytes, so whatever fails from here fails on every restart: raising it
        # would crash-loop the worker.
        try:
            fields = StateFields(_read_body(body), "state")
            state = SourceState.from_state(fields)
            fields.check_all_read()
        except MalformedState as error:
            raise StateNotLoadable(f"{redis_key}: signed but does not load: {error}") from None
        return state


def _describe(value: PlainValue, arrays: list[np.ndarray]) -> Any:
    """`value` as JSON, each array replaced by its descriptor and appended to `arrays`."""
    if isinstance(value, np.ndarray):
        if value.dtype.str not in _ARRAY_DTYPES:
            raise TypeError(f"a state array of {value.dtype} cannot be stored")
        arrays.append(np.ascontiguousarray(value))
        return {_ARRAY_TAG: [value.dtype.str, list(value.shape)]}
    if isinstance(value, dict):
        return {name: _describe(item, arrays) for name, item in value.items()}
    return value


def _read_body(body: bytes) -> dict[str, Any]:
    """The plain state in a body, arrays rebuilt (writable) from their descriptors."""
    if len(body) < _HEADER_LENGTH.size:
        raise MalformedState("body shorter than its header length")
    (header_size,) = _HEADER_LENGTH.unpack_from(body)
    header_end = _HEADER_LENGTH.size + header_size
    try:
        header = json.loads(body[_HEADER_LENGTH.size : header_end])
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise MalformedState(f"header is not JSON: {error}") from None
    if type(header) is not dict:
        raise MalformedState("header is not a JSON object")
    # One copy of the array bytes, which the arrays share: detectors update them in place.
    array_bytes = _ArrayBytes(bytearray(body[header_end:]))
    state = array_bytes.rebuild(header)
    array_bytes.check_all_used()
    return state


class _ArrayBytes:
    """The bytes after the header, handed out to arrays in order."""

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer
        self._used = 0

    def rebuild(self, value: dict[str, Any]) -> Any:
        """A JSON object of the header: a nested state, or an array's descriptor."""
        if _ARRAY_TAG in value:
            return self._array(value)
        return {
            name: self.rebuild(item) if type(item) is dict else item for name, item in value.items()
        }

    def _array(self, descriptor: dict[str, Any]) -> np.ndarray:
        described = descriptor[_ARRAY_TAG]
        if (
            len(descriptor) != 1
            or type(described) is not list
            or len(described) != 2
            or described[0] not in _ARRAY_DTYPES
            or type(described[1]) is not list
            or not all(type(side) is int and side >= 0 for side in described[1])
        ):
            raise MalformedState(f"not an array descriptor: {str(descriptor)[:100]}")
        dtype, shape = _ARRAY_DTYPES[described[0]], tuple(described[1])
        count = math.prod(shape)
        if self._used + count * dtype.itemsize > len(self._buffer):
            raise MalformedState(f"array {dtype} {list(shape)} runs past the end of the blob")
        array = np.frombuffer(self._buffer, dtype, count, self._used).reshape(shape)
        self._used += count * dtype.itemsize
        return array

    def check_all_used(self) -> None:
        if self._used != len(self._buffer):
            raise MalformedState(f"{len(self._buffer) - self._used} bytes after the last array")
