"""Snapshot chunk lists: fixed-width records (kind, length, chunk id) in content-defined groups.

A group ends after a record whose id has its low 11 bits zero (ids are keyed hashes, so this is
a content-defined cut: an edit early in the disk changes only the groups around it), or at 8192
records. Each group is stored as a META blob, so unchanged stretches of a list deduplicate.
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from typing import Iterable, Iterator

from agent.errors import CorruptObject

RECORD = struct.Struct("<BQ32s")  # kind, length, chunk id
DATA = 0
ZERO = 1
_NO_ID = bytes(32)
_CUT_MASK = (1 << 11) - 1
_MAX_GROUP = 8192


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int
    kind: int  # DATA or ZERO
    id: bytes  # chunk id, or 32 zero bytes for a zero run


class ChunkListWriter:
    """Collects records in image order; finished groups wait in `ready` until the caller stores them."""

    def __init__(self, digest) -> None:
        self._digest = digest  # keyed hasher over all records: the whole-image digest
        self._group: list[bytes] = []
        self._zero_run = 0  # adjacent zero runs merge into one record
        self.ready: list[bytes] = []
        self.offset = 0
        self.records = 0

    def _append(self, rec: bytes, cut: bool) -> None:
        self._group.append(rec)
        self._digest.update(rec)
        self.records += 1
        if cut or len(self._group) >= _MAX_GROUP:
            self.ready.append(b"".join(self._group))
            self._group = []

    def _flush_zero(self) -> None:
        if self._zero_run:
            self._append(bytes((ZERO,)) + self._zero_run.to_bytes(8, "little") + _NO_ID, False)
            self._zero_run = 0

    def add_data(self, length: int, cid: bytes) -> None:
        self._flush_zero()
        cut = (int.from_bytes(cid[-2:], "little") & _CUT_MASK) == 0
        self._append(bytes((DATA,)) + length.to_bytes(8, "little") + cid, cut)
        self.offset += length

    def add_zero(self, length: int) -> None:
        self._zero_run += length
        self.offset += length

    def digest(self) -> str:
        return self._digest.hexdigest()

    def finish(self) -> None:
        self._flush_zero()
        if self._group:
            self.ready.append(b"".join(self._group))
            self._group = []


class DeferredRecords:
    """Records of a later stretch of the image, cut while an earlier one still is, kept in an
    unnamed temporary file (41 bytes a chunk) until `replay` appends them to the writer in order."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self.offset = 0

    def add_data(self, length: int, cid: bytes) -> None:
        self._file.write(RECORD.pack(DATA, length, cid))
        self.offset += length

    def add_zero(self, length: int) -> None:
        self._file.write(RECORD.pack(ZERO, length, _NO_ID))
        self.offset += length

    def replay(self, writer: ChunkListWriter) -> None:
        self._file.seek(0)
        while piece := self._file.read(RECORD.size * 4096):
            for kind, length, cid in RECORD.iter_unpack(piece):
                if kind == DATA:
                    writer.add_data(length, cid)
                else:
                    writer.add_zero(length)
        self.close()

    def close(self) -> None:
        self._file.close()


def decode_group(data: bytes, name: str) -> bytes:
    """Check a group's records (RECORD, back to back) and return them."""
    if len(data) % RECORD.size:
        raise CorruptObject(f"chunk list blob {name[:16]} is malformed")
    if data and max(data[::RECORD.size]) > ZERO:  # every record's first byte is its kind
        raise CorruptObject(f"chunk list blob {name[:16]} has an unknown record kind")
    return bytes(data)


def records(groups: Iterable[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """(kind, length, id) of every record, in image order."""
    for group in groups:
        yield from RECORD.iter_unpack(group)


def extents(groups: Iterable[bytes]) -> Iterator[Extent]:
    offset = 0
    for kind, length, cid in records(groups):
        yield Extent(offset, length, kind, cid)
        offset += length
