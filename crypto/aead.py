"""AEAD envelope: AES-256-GCM under a fresh key per message.

Each message draws a random 192-bit nonce N and encrypts under subkey = BLAKE3-keyed(K, N) with
a fixed GCM nonce. A subkey is used exactly once, so GCM's 2^32-messages-per-key limit for random
96-bit nonces never applies; the only bound is a collision of 192-bit values (docs/security.md).

Layout: suite byte (1) | N (24) | ciphertext | tag (16).
"""

from __future__ import annotations

import os

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import AuthenticationFailed, UnsupportedSuite

SUITE_AES256GCM_BLAKE3 = 1
NONCE_SIZE = 24
TAG_SIZE = 16
OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
_GCM_NONCE = bytes(12)
_CONTEXT = b"agent aead subkey v1"


def _subkey(key: bytes, nonce: bytes) -> bytes:
    return blake3.blake3(_CONTEXT + nonce, key=key).digest()


def seal(key: bytes, plaintext: bytes | memoryview, associated_data: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    ct = AESGCM(_subkey(key, nonce)).encrypt(_GCM_NONCE, plaintext, associated_data)
    return bytes((SUITE_AES256GCM_BLAKE3,)) + nonce + ct


def open_(key: bytes, sealed: bytes | memoryview, associated_data: bytes) -> bytes:
    sealed = memoryview(sealed)
    if len(sealed) < OVERHEAD:
        raise AuthenticationFailed("sealed object is too short")
    if sealed[0] != SUITE_AES256GCM_BLAKE3:
        raise UnsupportedSuite(f"unknown cipher suite {sealed[0]}")
    nonce = bytes(sealed[1:1 + NONCE_SIZE])
    try:
        return AESGCM(_subkey(key, nonce)).decrypt(_GCM_NONCE, sealed[1 + NONCE_SIZE:], associated_data)
    except InvalidTag:
        raise AuthenticationFailed("authentication failed") from None
