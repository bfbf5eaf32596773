"""Chunk <-> stored blob: compress (zstd, kept raw if it does not shrink), then seal with AEAD whose
associated data binds the repository, the blob type and the chunk id, so a blob cannot be
swapped for another one, moved between repositories, or read as another type."""

from __future__ import annotations

import enum
import threading

import zstandard

from agent.errors import CorruptObject
from crypto import aead
from crypto.errors import AuthenticationFailed, UnsupportedSuite
from crypto.ids import chunk_id
from crypto.keys import MasterKey

#: refuse to inflate a blob past this: bounds memory on hostile input
MAX_RAW_BLOB = 64 << 20


class BlobType(enum.IntEnum):
    DATA = 1  # image bytes
    META = 2  # snapshot chunk-list records


class Envelope:
    """Seals and opens blobs for one repository. Thread-safe: each thread gets its own zstd contexts."""

    def __init__(self, master: MasterKey, repo_id: str, level: int = 3) -> None:
        self._master = master
        self._repo = bytes.fromhex(repo_id)
        self._level = level
        self._local = threading.local()

    def _ad(self, btype: int, cid: bytes) -> bytes:
        return b"agent blob v1\x00" + self._repo + bytes((btype,)) + cid

    def _cctx(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self._level, write_checksum=False)
        return c

    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return chunk_id(self._master.id_key, data)

    def seal(self, btype: BlobType, cid: bytes, data: bytes | memoryview) -> bytes:
        packed = self._cctx().compress(data)
        if len(packed) < len(data):
            body = b"\x01" + packed
        else:
            body = b"\x00" + bytes(data)
        return aead.seal(self._master.encryption_key, body, self._ad(btype, cid))

    def open(self, btype: BlobType, cid: bytes, sealed: bytes | memoryview, raw_length: int | None = None) -> bytes:
        """Authenticate, decompress and check that the plaintext hashes to `cid`."""
        try:
            body = aead.open_(self._master.encryption_key, sealed, self._ad(btype, cid))
        except (AuthenticationFailed, UnsupportedSuite):  # a damaged first byte names no known suite
            raise CorruptObject(f"blob {cid.hex()[:16]} failed authentication") from None
        limit = min(raw_length, MAX_RAW_BLOB) if raw_length is not None else MAX_RAW_BLOB
        if body[:1] == b"\x01":  # a memoryview: slicing the bytes would copy the whole blob first
            data = self._inflate(memoryview(body)[1:], limit, f"blob {cid.hex()[:16]}")
        elif body[:1] == b"\x00":
            data = body[1:]
        else:
            raise CorruptObject(f"blob {cid.hex()[:16]} has an unknown encoding")
        if raw_length is not None and len(data) != raw_length:
            raise CorruptObject(f"blob {cid.hex()[:16]} has the wrong length")
        if self.chunk_id(data) != cid:
            raise CorruptObject(f"blob {cid.hex()[:16]} does not match its id")
        return data

    def seal_object(self, kind: bytes, data: bytes) -> bytes:
        """Seal a whole repository object (index segment, snapshot, lock, pack header)."""
        return aead.seal(self._master.encryption_key, data, b"agent object v1\x00" + self._repo + kind)

    def open_object(self, kind: bytes, sealed: bytes | memoryview, name: str) -> bytes:
        try:
            return aead.open_(self._master.encryption_key, sealed, b"agent object v1\x00" + self._repo + kind)
        except (AuthenticationFailed, UnsupportedSuite):  # a damaged first byte names no known suite
            raise CorruptObject(f"{name} failed authentication: it was modified or damaged") from None

    def compress(self, data: bytes) -> bytes:
        return self._cctx().compress(data)

    def decompress(self, data: bytes | memoryview, limit: int = 1 << 30, name: str = "metadata object") -> bytes:
        """Inflate a metadata object (index segment, snapshot manifest); `name` says which in errors."""
        return self._inflate(data, limit, name)

    def _inflate(self, data: bytes | memoryview, limit: int, name: str) -> bytes:
        """At most `limit` bytes out of one zstd frame. zstandard allocates the content size a frame
        header declares up front, whatever max_output_size says (a 2^60 claim was a MemoryError), so
        a claim past the limit is refused before anything is allocated."""
        try:
            claimed = zstandard.frame_content_size(data)  # -1: not declared, max_output_size bounds it
            if claimed > limit:
                raise CorruptObject(f"{name} claims to decompress to {claimed} bytes, more than {limit}")
            return self._dctx().decompress(data, max_output_size=limit)
        except zstandard.ZstdError:
            raise CorruptObject(f"{name} does not decompress") from None
