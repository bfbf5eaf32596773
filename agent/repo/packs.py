"""Packs: many sealed blobs in one storage object, then a sealed header, then its length.

Because the header travels inside the pack, a pack can be read and re-indexed without any
index (crash recovery, `check`). Pack id = SHA-256 of the pack bytes, verifiable without keys.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from crypto.ids import object_id
from agent.errors import CorruptObject
from agent.repo.envelope import Envelope

_MAGIC = b"APH1"
_KIND = b"pack-header"
HEADER_DTYPE = np.dtype([("type", "u1"), ("id", "V32"), ("offset", "<u4"), ("length", "<u4"), ("raw", "<u4")])
#: a header larger than this is refused (bounds memory on hostile input)
MAX_HEADER = 32 << 20


@dataclass(frozen=True)
class PackEntry:
    type: int
    id: bytes
    offset: int
    length: int
    raw_length: int


class PackBuilder:
    """Accumulates sealed blobs in memory; `finish` returns (pack id, pack bytes, entries)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._entries: list[tuple[int, bytes, int, int, int]] = []
        self.raw_bytes = 0

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def count(self) -> int:
        return len(self._entries)

    def add(self, btype: int, cid: bytes, sealed: bytes, raw_length: int) -> None:
        self._entries.append((btype, cid, len(self._buf), len(sealed), raw_length))
        self._buf += sealed
        self.raw_bytes += raw_length

    def finish(self, envelope: Envelope) -> tuple[str, bytes, list[PackEntry]]:
        table = np.array(self._entries, dtype=HEADER_DTYPE)
        plain = _MAGIC + struct.pack("<I", len(table)) + table.tobytes()
        sealed = envelope.seal_object(_KIND, plain)
        self._buf += sealed + struct.pack("<I", len(sealed))
        data = bytes(self._buf)
        self._buf = bytearray()  # one copy of the pack in memory, not two, while it uploads
        entries = [PackEntry(*e) for e in self._entries]
        return object_id(data), data, entries


def header_location(pack_size: int, tail: bytes) -> tuple[int, int]:
    """From the last 4 bytes of a pack: (offset, length) of the sealed header."""
    if pack_size < 4 or len(tail) < 4:
        raise CorruptObject("pack is truncated (no header length)")
    (hlen,) = struct.unpack("<I", tail[-4:])
    if hlen > MAX_HEADER or hlen + 4 > pack_size:
        raise CorruptObject("pack header length is implausible: pack truncated or damaged")
    return pack_size - 4 - hlen, hlen


def parse_header(envelope: Envelope, sealed: bytes | memoryview, data_end: int, name: str) -> list[PackEntry]:
    plain = envelope.open_object(_KIND, sealed, f"header of pack {name[:16]}")
    if plain[:4] != _MAGIC or len(plain) < 8:
        raise CorruptObject(f"pack {name[:16]} has an unknown header format")
    (count,) = struct.unpack("<I", plain[4:8])
    if len(plain) != 8 + count * HEADER_DTYPE.itemsize:
        raise CorruptObject(f"pack {name[:16]} header is malformed")
    table = np.frombuffer(plain, dtype=HEADER_DTYPE, offset=8, count=count)
    entries = [PackEntry(int(r["type"]), r["id"].tobytes(), int(r["offset"]), int(r["length"]), int(r["raw"]))
               for r in table]
    for e in entries:
        if e.offset + e.length > data_end:
            raise CorruptObject(f"pack {name[:16]} header points past the data")
    return entries


def read_pack_bytes(envelope: Envelope, data: bytes, name: str) -> list[PackEntry]:
    """Parse a whole pack held in memory, checking its name against its hash."""
    if object_id(data) != name:
        raise CorruptObject(f"pack {name[:16]} does not match its name (damaged or truncated)")
    off, hlen = header_location(len(data), data[-4:])
    return parse_header(envelope, memoryview(data)[off:off + hlen], off, name)
