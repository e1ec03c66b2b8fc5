"""State blobs as an older worker, or this one before a class moved, left them in Redis.

Made by hand, as the codec's format describes them, so that tests can store blobs the
running code would never write. Imports nothing of the project.
"""

from __future__ import annotations

import hashlib
import hmac


def signed_blob(hmac_key: bytes, storage_key: str, header: bytes, body: bytes) -> bytes:
    """A state blob under any version header, signed as `StateCodec` signs (by the owner
    of the key)."""
    mac = hmac.new(hmac_key, storage_key.encode() + b"\0" + body, hashlib.sha256).digest()
    return header + mac + body


def pickle_naming(module: str, name: str) -> bytes:
    """A pickle that rebuilds an instance of `module.name`, whether or not that exists."""
    return b"\x80\x04c" + f"{module}\n{name}\n".encode() + b")\x81."
