"""State blobs as an older worker, or this one before a field changed, left them in Redis.

Made by hand, as the codec's format describes them, so that tests can store blobs the
running code would never write. Imports nothing of the project.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct


def signed_blob(hmac_key: bytes, storage_key: str, header: bytes, body: bytes) -> bytes:
    """A state blob under any version header, signed as `StateCodec` signs (by the owner
    of the key): over version ‖ len(key) ‖ key ‖ len(body) ‖ body, lengths big-endian."""
    key = storage_key.encode()
    message = header + struct.pack(">I", len(key)) + key + struct.pack(">Q", len(body)) + body
    return header + hmac.new(hmac_key, message, hashlib.sha256).digest() + body


def plain_body(header: object, array_bytes: bytes = b"") -> bytes:
    """A body of the plain format: its JSON header's length, the header, the array bytes."""
    encoded = json.dumps(header).encode()
    return struct.pack(">I", len(encoded)) + encoded + array_bytes


def pickle_naming(module: str, name: str) -> bytes:
    """A pickle that rebuilds an instance of `module.name`, whether or not that exists.

    No codec since version 3 reads pickles: signed as a body, it must not load.
    """
    return b"\x80\x04c" + f"{module}\n{name}\n".encode() + b")\x81."
