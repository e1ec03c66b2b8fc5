"""Turns a source's detector state into bytes for Redis and back, refusing anything forged.

The state holds a pickled river object, and unpickling runs code. So each blob is
signed: HMAC-SHA256, keyed by the `state_hmac_key` setting, over the blob and the
Redis key it is stored under (a blob copied to another source's key fails too).
A blob that fails the check is never unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle

from framedrift.worker.detection.monitor import SourceState

CODEC_VERSION = b"fd1"
_MAC_SIZE = hashlib.sha256().digest_size


class StateVerificationError(ValueError):
    """A stored state blob is not one this worker signed with its key."""


class StateCodec:
    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key

    def _mac(self, redis_key: str, body: bytes) -> bytes:
        return hmac.new(self._key, redis_key.encode() + b"\0" + body, hashlib.sha256).digest()

    def encode(self, state: SourceState, redis_key: str) -> bytes:
        body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        return CODEC_VERSION + self._mac(redis_key, body) + body

    def decode(self, blob: bytes, redis_key: str) -> SourceState:
        header = len(CODEC_VERSION)
        if blob[:header] != CODEC_VERSION or len(blob) < header + _MAC_SIZE:
            raise StateVerificationError(f"{redis_key}: not a framedrift state blob")
        mac, body = blob[header : header + _MAC_SIZE], blob[header + _MAC_SIZE :]
        if not hmac.compare_digest(mac, self._mac(redis_key, body)):
            raise StateVerificationError(f"{redis_key}: signature does not match")
        state = pickle.loads(body)  # safe: signed by us
        if not isinstance(state, SourceState):
            raise StateVerificationError(f"{redis_key}: signed blob is not a SourceState")
        return state
