"""Turns a source's detector state into bytes for Redis and back, refusing anything forged.

The state holds a pickled river object, and unpickling runs code. So each blob is
signed: HMAC-SHA256, keyed by the `state_hmac_key` setting, over the blob and the
Redis key it is stored under (a blob copied to another source's key fails too).
A blob that fails the check is never unpickled.

A blob starts with a version header. Pickles name classes by module path, so a blob
written before a class moved no longer loads: whenever the state's classes move or
change shape, the version goes up and blobs of other versions are not even unpickled.
Every way a blob can be unusable is an `UnusableState` with a `reason`; the store
restarts that source clean instead of letting the error halt the worker.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from dataclasses import fields

from framedrift.worker.detection.monitor import SourceState

# b"fd" and a version character. Version 2: the modules moved under `framedrift.worker`.
CODEC_MAGIC = b"fd"
CODEC_VERSION = CODEC_MAGIC + b"2"
_MAC_SIZE = hashlib.sha256().digest_size


class UnusableState(ValueError):
    """A stored state blob this worker cannot use; its source restarts clean."""

    reason = "unusable"  # the label of `framedrift_state_resets_total`


class StateVerificationError(UnusableState):
    """A stored state blob is not one this worker signed with its key."""

    reason = "signature"


class StateVersionMismatch(UnusableState):
    """A state blob written by another version of the codec; never unpickled."""

    reason = "codec_version"


class StateNotLoadable(UnusableState):
    """A blob this worker signed that the running code cannot rebuild (a class moved,
    was renamed or changed its fields without a version bump)."""

    reason = "unloadable"


class StateCodec:
    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key

    def _mac(self, redis_key: str, body: bytes) -> bytes:
        return hmac.new(self._key, redis_key.encode() + b"\0" + body, hashlib.sha256).digest()

    def encode(self, state: SourceState, redis_key: str) -> bytes:
        body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        return CODEC_VERSION + self._mac(redis_key, body) + body

    def decode(self, blob: bytes, redis_key: str) -> SourceState:
        """The state in `blob`, or an `UnusableState` saying why there is none."""
        header = len(CODEC_VERSION)
        if not blob.startswith(CODEC_MAGIC) or len(blob) < header + _MAC_SIZE:
            raise StateVerificationError(f"{redis_key}: not a framedrift state blob")
        if blob[:header] != CODEC_VERSION:
            raise StateVersionMismatch(
                f"{redis_key}: codec version {blob[:header]!r}, this worker reads {CODEC_VERSION!r}"
            )
        mac, body = blob[header : header + _MAC_SIZE], blob[header + _MAC_SIZE :]
        if not hmac.compare_digest(mac, self._mac(redis_key, body)):
            raise StateVerificationError(f"{redis_key}: signature does not match")
        try:
            state = pickle.loads(body)  # safe: signed by us
        except Exception as error:
            # Our own bytes, so whatever fails here fails on every restart: a missing
            # module or class, a changed __setstate__. Raising it would crash-loop.
            raise StateNotLoadable(
                f"{redis_key}: signed but does not load: {type(error).__name__}: {error}"
            ) from error
        if not isinstance(state, SourceState):
            raise StateNotLoadable(f"{redis_key}: signed blob is not a SourceState")
        missing = [field.name for field in fields(SourceState) if not hasattr(state, field.name)]
        if missing:
            raise StateNotLoadable(f"{redis_key}: stored state lacks {', '.join(missing)}")
        return state
