"""Packs: many sealed blobs in one storage object, then a sealed header, then its length.

Because the header travels inside the pack, a pack can be read and re-indexed without any
index (crash recovery, `check`). Pack id = SHA-256 of the pack bytes, verifiable without keys.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from agent.errors import CorruptObject
from agent.repo.envelope import Envelope
from crypto.ids import object_hasher, object_id

_MAGIC = b"APH1"
_KIND = b"pack-header"
HEADER_RECORD = struct.Struct("<B32sIII")  # type, id, offset, length, raw length
#: a header larger than this is refused (bounds memory on hostile input)
MAX_HEADER = 32 << 20
_HASH_PIECE = 1 << 20


@dataclass(frozen=True)
class PackEntry:
    type: int
    id: bytes
    offset: int
    length: int
    raw_length: int


class SpooledPack:
    """A finished pack in an unnamed temporary file, ready for `Backend.put_file`; close it after."""

    def __init__(self, pack_id: str, file: BinaryIO, size: int, entries: list[PackEntry]) -> None:
        self.id, self.file, self.size, self.entries = pack_id, file, size, entries

    def close(self) -> None:
        self.file.close()


class PackBuilder:
    """Spools sealed blobs to an unnamed temporary file, so a pack being filled or uploaded costs
    no memory (packs are 16-64 MiB, and several are in flight); `finish` seals the header.

    The file lives in TMPDIR; it has no name, so nothing is left behind by a crash, and it holds
    only sealed blobs.
    """

    def __init__(self) -> None:
        self._file: BinaryIO | None = None
        self._size = 0
        self._entries: list[tuple[int, bytes, int, int, int]] = []
        self.raw_bytes = 0

    def __len__(self) -> int:
        return self._size

    @property
    def count(self) -> int:
        return len(self._entries)

    def _append(self, data: bytes | memoryview) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        view = memoryview(data)
        fd = self._file.fileno()
        while view:
            view = view[os.write(fd, view):]
        self._size += len(data)

    def add(self, btype: int, cid: bytes, sealed: bytes | memoryview, raw_length: int) -> None:
        self._entries.append((btype, cid, self._size, len(sealed), raw_length))
        self._append(sealed)
        self.raw_bytes += raw_length

    def finish(self, envelope: Envelope) -> SpooledPack:
        """Append the sealed header and its length; name the pack by hashing the file back (from
        the page cache, in pieces) in the calling thread, which is an upload thread in backups."""
        table = b"".join(HEADER_RECORD.pack(*e) for e in self._entries)
        plain = _MAGIC + struct.pack("<I", len(self._entries)) + table
        sealed = envelope.seal_object(_KIND, plain)
        self._append(sealed + struct.pack("<I", len(sealed)))
        assert self._file is not None
        h = object_hasher()
        buf = bytearray(_HASH_PIECE)
        fd, pos = self._file.fileno(), 0
        while pos < self._size:
            n = os.preadv(fd, [buf], pos)
            if n <= 0:
                raise OSError(f"pack spool file shrank to {pos} bytes")
            h.update(memoryview(buf)[:n])
            pos += n
        entries = [PackEntry(*e) for e in self._entries]
        pack = SpooledPack(h.hexdigest(), self._file, self._size, entries)
        self._file = None
        return pack

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def header_location(pack_size: int, tail: bytes, name: str) -> tuple[int, int]:
    """From the last 4 bytes of a pack: (offset, length) of the sealed header."""
    if pack_size < 4 or len(tail) < 4:
        raise CorruptObject(f"pack {name[:16]} is truncated (no header length)")
    (hlen,) = struct.unpack("<I", tail[-4:])
    if hlen > MAX_HEADER or hlen + 4 > pack_size:
        raise CorruptObject(f"pack {name[:16]} header length is implausible: pack truncated or damaged")
    return pack_size - 4 - hlen, hlen


def parse_header(envelope: Envelope, sealed: bytes | memoryview, data_end: int, name: str) -> list[PackEntry]:
    plain = envelope.open_object(_KIND, sealed, f"header of pack {name[:16]}")
    if plain[:4] != _MAGIC or len(plain) < 8:
        raise CorruptObject(f"pack {name[:16]} has an unknown header format")
    (count,) = struct.unpack("<I", plain[4:8])
    if len(plain) != 8 + count * HEADER_RECORD.size:
        raise CorruptObject(f"pack {name[:16]} header is malformed")
    entries = [PackEntry(*r) for r in HEADER_RECORD.iter_unpack(memoryview(plain)[8:])]
    for e in entries:
        if e.offset + e.length > data_end:
            raise CorruptObject(f"pack {name[:16]} header points past the data")
    return entries


def read_pack_bytes(envelope: Envelope, data: bytes, name: str) -> list[PackEntry]:
    """Parse a whole pack held in memory, checking its name against its hash."""
    if object_id(data) != name:
        raise CorruptObject(f"pack {name[:16]} does not match its name (damaged or truncated)")
    off, hlen = header_location(len(data), data[-4:], name)
    return parse_header(envelope, memoryview(data)[off:off + hlen], off, name)
