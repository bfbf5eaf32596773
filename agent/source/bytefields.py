"""Bounds-checked reads of on-disk fields from untrusted disk images.

Partition tables and superblocks come from whatever disk was backed up, so every field read
goes through these helpers: a short buffer reads as zeros and a read past the image end
returns fewer bytes, instead of raising.
"""

from __future__ import annotations

import struct
import uuid
from typing import Callable

Reader = Callable[[int, int], bytes]


def field(buf: bytes, off: int, length: int) -> bytes:
    """Exactly `length` bytes at `off`, zero-padded where the buffer is short."""
    chunk = buf[off : off + length]
    return chunk + bytes(length - len(chunk)) if len(chunk) < length else chunk


def u8(buf: bytes, off: int) -> int:
    return buf[off] if 0 <= off < len(buf) else 0


def u16(buf: bytes, off: int) -> int:
    return struct.unpack_from("<H", field(buf, off, 2))[0]


def u32(buf: bytes, off: int) -> int:
    return struct.unpack_from("<I", field(buf, off, 4))[0]


def u64(buf: bytes, off: int) -> int:
    return struct.unpack_from("<Q", field(buf, off, 8))[0]


def guid_le(raw: bytes) -> str:
    """GPT GUIDs are stored mixed-endian; shown upper-case as sgdisk and the spec do."""
    return str(uuid.UUID(bytes_le=field(raw, 0, 16))).upper()


def uuid_be(raw: bytes) -> str:
    return str(uuid.UUID(bytes=field(raw, 0, 16)))


def padded_text(raw: bytes, encoding: str = "ascii") -> str | None:
    """A NUL/space padded on-disk label, or None when empty."""
    s = raw.split(b"\x00", 1)[0].decode(encoding, errors="replace").strip()
    return s or None


class Image:
    """Bounded reads from the caller's reader; never asks for bytes past the image end."""

    def __init__(self, read: Reader, size: int):
        self._read = read
        self.size = max(0, int(size))

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        data = self._read(offset, length)
        return bytes(data[:length])
