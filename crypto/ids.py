"""Keyed content ids: the storage provider cannot confirm a guess of chunk content from its id."""

from __future__ import annotations

import hashlib

import blake3


def chunk_id(id_key: bytes, data: bytes | memoryview) -> bytes:
    """Keyed BLAKE3-256 of the plaintext (releases the GIL, so threads hash in parallel)."""
    return blake3.blake3(data, key=id_key).digest()


def keyed_hasher(id_key: bytes) -> blake3.blake3:
    """An incremental keyed hasher, for digests over streams of records."""
    return blake3.blake3(key=id_key)


def object_hasher() -> hashlib._Hash:
    """Incremental form of `object_id`, for objects spooled to disk (hexdigest() is the name)."""
    return hashlib.sha256()


def object_id(data: bytes | memoryview) -> str:
    """Name of a stored object: SHA-256 of its (already encrypted) bytes, verifiable without keys."""
    return hashlib.sha256(data).hexdigest()
