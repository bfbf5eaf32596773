"""Master key material and passphrase-protected key files.

The master key never leaves the machine unwrapped. Each key file wraps the same master material
under a different passphrase, so passphrases can be added, changed and removed without
re-encrypting data.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass

from crypto import aead
from crypto.errors import AuthenticationFailed, KeyNotUnwrapped, UnsupportedSuite
from crypto.kdf import KdfParams, derive

_MASTER_FORMAT = 1


@dataclass(frozen=True, repr=False)
class MasterKey:
    """encryption key (AEAD), id key (keyed chunk ids), chunker seed (secret FastCDC gear table)."""

    encryption_key: bytes
    id_key: bytes
    chunker_seed: int

    def __repr__(self) -> str:  # never print key material, even in a traceback
        return "MasterKey(<redacted>)"

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(32), secrets.token_bytes(32), secrets.randbits(63) | 1)

    def to_bytes(self) -> bytes:
        return bytes((_MASTER_FORMAT,)) + self.encryption_key + self.id_key + self.chunker_seed.to_bytes(8, "big")

    @classmethod
    def from_bytes(cls, raw: bytes) -> MasterKey:
        if len(raw) != 73 or raw[0] != _MASTER_FORMAT:
            raise UnsupportedSuite("unknown master key format")
        return cls(raw[1:33], raw[33:65], int.from_bytes(raw[65:73], "big"))


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _ad(repo_id: str) -> bytes:
    return b"agent key file v1\x00" + repo_id.encode()


def wrap(master: MasterKey, passphrase: bytes, repo_id: str, params: KdfParams, meta: dict) -> bytes:
    """Key file bytes (JSON): KDF params + salt + the master key sealed under the derived key."""
    salt = os.urandom(16)
    kek = derive(passphrase, salt, params)
    doc = {
        "version": 1,
        "kdf": params.to_dict(),
        "salt": _b64(salt),
        "data": _b64(aead.seal(kek, master.to_bytes(), _ad(repo_id))),
        **{k: v for k, v in meta.items() if k not in ("version", "kdf", "salt", "data")},
    }
    return json.dumps(doc, indent=1).encode()


def read_meta(keyfile: bytes) -> dict:
    """The non-secret fields of a key file (creation time, host, user, label); UnsupportedSuite when
    it is not a key file."""
    try:
        doc = json.loads(keyfile)
    except (ValueError, RecursionError):
        raise UnsupportedSuite("malformed key file: not JSON") from None
    if not isinstance(doc, dict):
        raise UnsupportedSuite("malformed key file: not an object")
    return {k: v for k, v in doc.items() if k not in ("salt", "data")}


def unwrap(keyfile: bytes, passphrase: bytes, repo_id: str) -> MasterKey:
    try:
        doc = json.loads(keyfile)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        if doc.get("version") != 1:
            raise UnsupportedSuite(f"key file version {doc.get('version')!r} is not supported")
        params = KdfParams.from_dict(doc["kdf"])
        salt = base64.b64decode(doc["salt"], validate=True)
        sealed = base64.b64decode(doc["data"], validate=True)
        if len(salt) < 8:  # Argon2's minimum; wrap() writes 16 bytes
            raise ValueError("salt too short")
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise UnsupportedSuite(f"malformed key file: {exc.__class__.__name__}") from None
    kek = derive(passphrase, salt, params)
    try:
        return MasterKey.from_bytes(aead.open_(kek, sealed, _ad(repo_id)))
    except AuthenticationFailed:
        raise KeyNotUnwrapped("the key file does not open with this passphrase") from None
