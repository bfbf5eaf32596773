"""Master key material and passphrase-protected key files.

The master key never leaves the machine unwrapped. Each key file wraps the same master material
under a different passphrase, so passphrases can be added, changed and removed without
re-encrypting data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass

from crypto import aead
from crypto.errors import AuthenticationFailed, KeyFileDamaged, KeyNotUnwrapped, UnsupportedSuite
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


_DIGEST = "digest"


def _digest(doc: dict) -> str:
    """Unkeyed SHA-256 over the canonical JSON of every other field. Not a defence against an attacker
    (who can recompute it); it tells a damaged key file from a wrong passphrase, which the AEAD alone
    cannot: both fail to authenticate."""
    rest = {k: v for k, v in doc.items() if k != _DIGEST}
    return "sha256:" + hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def wrap(master: MasterKey, passphrase: bytes, repo_id: str, params: KdfParams, meta: dict) -> bytes:
    """Key file bytes (JSON): KDF params + salt + the master key sealed under the derived key, and
    the integrity digest of those fields."""
    salt = os.urandom(16)
    kek = derive(passphrase, salt, params)
    doc = {
        "version": 1,
        "kdf": params.to_dict(),
        "salt": _b64(salt),
        "data": _b64(aead.seal(kek, master.to_bytes(), _ad(repo_id))),
        **{k: v for k, v in meta.items() if k not in ("version", "kdf", "salt", "data", _DIGEST)},
    }
    doc[_DIGEST] = _digest(doc)
    return json.dumps(doc, indent=1).encode()


def read_meta(keyfile: bytes) -> dict:
    """The non-secret fields of a key file (creation time, host, user, label); raises as `verify`."""
    return {k: v for k, v in verify(keyfile).items() if k not in ("salt", "data", _DIGEST)}


def verify(keyfile: bytes) -> dict:
    """The parsed key file: KeyFileDamaged when its digest (written by agents since it was added;
    older key files have none) does not match, UnsupportedSuite when it is no key file at all."""
    try:
        doc = json.loads(keyfile)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        intact = _DIGEST not in doc or doc[_DIGEST] == _digest(doc)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser goes
        raise UnsupportedSuite(f"malformed key file: {exc.__class__.__name__}") from None
    if not intact:
        raise KeyFileDamaged("its integrity digest does not match its contents")
    return doc


def unwrap(keyfile: bytes, passphrase: bytes, repo_id: str) -> MasterKey:
    """The master key; a damaged key file is refused before any key derivation (see `verify`)."""
    doc = verify(keyfile)
    try:
        if doc.get("version") != 1:
            raise UnsupportedSuite(f"key file version {doc.get('version')!r} is not supported")
        params = KdfParams.from_dict(doc["kdf"])
        salt = base64.b64decode(doc["salt"], validate=True)
        sealed = base64.b64decode(doc["data"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise UnsupportedSuite(f"malformed key file: {exc.__class__.__name__}") from None
    kek = derive(passphrase, salt, params)  # refuses a salt shorter than Argon2's minimum, by its length
    try:
        return MasterKey.from_bytes(aead.open_(kek, sealed, _ad(repo_id)))
    except AuthenticationFailed:
        raise KeyNotUnwrapped("the key file does not open with this passphrase") from None
