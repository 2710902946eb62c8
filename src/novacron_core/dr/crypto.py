"""Client-side envelope of every stored object: AES-256-GCM with the object's key name as
associated data (an object copied under another name fails to open), or plain bytes when no
key is configured. The checksum every object carries is the SHA-256 of the stored bytes,
checked before decrypting so a corrupted object is named as such, not as a wrong key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC_PLAIN, MAGIC_AES = b"NCB0", b"NCB1"


class IntegrityError(ValueError):
    """A stored object does not match its checksum, or does not decrypt with the key."""


def load_key(path: str | Path) -> bytes:
    """A 256-bit key from a file (a mounted Secret): 32 raw bytes, or 64 hex / base64 chars."""
    raw = Path(path).read_bytes()
    if len(raw) == 32:
        return raw
    text = raw.strip()
    for decoder in (binascii.unhexlify, base64.b64decode):
        try:
            key = decoder(text)
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    raise ValueError(f"{path}: a backup key must be 32 bytes (raw, hex or base64)")


def seal(key: bytes | None, name: str, data: bytes) -> bytes:
    if key is None:
        return MAGIC_PLAIN + data
    nonce = os.urandom(12)
    return MAGIC_AES + nonce + AESGCM(key).encrypt(nonce, data, name.encode())


def checksum(stored: bytes) -> str:
    return hashlib.sha256(stored).hexdigest()


def open_sealed(key: bytes | None, name: str, stored: bytes, sha256: str) -> bytes:
    if checksum(stored) != sha256:
        raise IntegrityError(f"{name}: checksum mismatch (the stored object is corrupt)")
    magic = stored[:4]
    if magic == MAGIC_PLAIN:
        return stored[4:]
    if magic != MAGIC_AES:
        raise IntegrityError(f"{name}: not a NovaCron backup object")
    if key is None:
        raise IntegrityError(f"{name}: encrypted; pass the backup key (--key-file)")
    try:
        return AESGCM(key).decrypt(stored[4:16], stored[16:], name.encode())
    except InvalidTag:
        raise IntegrityError(f"{name}: does not decrypt with this key (wrong key?)") from None
