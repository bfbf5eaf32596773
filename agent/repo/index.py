"""Chunk index: chunk id -> (pack, offset, length, raw length), compact enough for large disks.

In memory the index is two flat buffers sorted by id, 49 bytes per chunk: an `array('Q')` of each
id's first 8 bytes (read big-endian, so integer order is id order) and one `bytearray` of 41-byte
rows (the other 24 id bytes, pack number, offset, lengths, type), plus a small dict of entries
added since the last merge. A lookup is `bisect` on the key array, in C. Python objects exist only
per pack, never per chunk, except while a batch is sorted into place. The standard library's
`array` replaced numpy here: numpy cost every command 11-15 MB and 0.09 s of imports, more than
the whole pipeline's buffers. On storage an index segment is the same records, zstd-compressed
and sealed.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import islice
from operator import eq
from typing import Callable, Iterable, Iterator, Sequence

from agent.errors import CorruptObject
from agent.repo.packs import PackEntry

SEG_RECORD = struct.Struct("<32sIIIIB")  # id, pack number in the segment, offset, length, raw length, type
ROW = struct.Struct("<24sIIIIB")  # a merged row: id bytes 8..32, pack number in the index, offset, ...
_PACK = struct.Struct("<32sQ")  # a segment's pack table: id, size
_MAGIC = b"AIX1"
_MERGE_AT = 65536
COLUMNS = ("pack", "offset", "length", "raw", "type")


@dataclass(frozen=True)
class Location:
    pack_id: str
    type: int
    offset: int
    length: int
    raw_length: int


def _columns(records: list[bytes]) -> tuple[array, bytearray]:
    """Search keys and rows of sorted SEG_RECORD records. Fields are gathered from one joined
    buffer with strided slices (in C): no per-record objects beyond the records themselves."""
    blob = b"".join(records)
    n, size = len(records), SEG_RECORD.size
    del records[:]
    key_bytes, rows = bytearray(8 * n), bytearray(ROW.size * n)
    for j in range(8):
        key_bytes[j::8] = blob[j::size]
    for j in range(ROW.size):
        rows[j::ROW.size] = blob[8 + j::size]
    keys = array("Q")
    keys.frombytes(key_bytes)
    if sys.byteorder == "little":  # the first 8 id bytes read big-endian: key order is id order
        keys.byteswap()
    return keys, rows


class ChunkIndex:
    """Not thread-safe for writers: the backup pipeline adds from one thread."""

    def __init__(self) -> None:
        self.pack_ids: list[str] = []
        self.pack_sizes: list[int] = []
        self._pack_no: dict[str, int] = {}
        self._keys = array("Q")
        self._rows = bytearray()
        self._delta: dict[bytes, tuple[int, int, int, int, int]] = {}  # id -> (pack, type, offset, length, raw)
        #: chunk id -> where a copy left out as damaged was (agent.repo.damage): for messages, for
        #: prune (a known loss is not an index missing something) and for salvaging (repair)
        self.lost: dict[bytes, Location] = {}
        #: the damage records' verdict per pack (None: every blob; else the damaged blob ids), so that
        #: packs indexed later (writer.adopt_orphan_packs) are filtered the same way
        self.damaged: dict[str, frozenset[bytes] | None] = {}
        #: stored segments a newer one supersedes: kept only until prune deletes them (or, under
        #: Object Lock, until their retention lapses), never read
        self.superseded: set[str] = set()

    def __len__(self) -> int:
        return len(self._keys) + len(self._delta)

    @property
    def nbytes(self) -> int:
        """Memory held by the merged per-chunk rows (for docs and tests)."""
        return len(self._keys) * self._keys.itemsize + len(self._rows)

    def has_pack(self, pack_id: str) -> bool:
        return pack_id in self._pack_no

    def pack_number(self, pack_id: str, size: int) -> int:
        n = self._pack_no.get(pack_id)
        if n is None:
            n = self._pack_no[pack_id] = len(self.pack_ids)
            self.pack_ids.append(pack_id)
            self.pack_sizes.append(size)
        return n

    def add_pack(self, pack_id: str, size: int, entries: Iterable[PackEntry]) -> None:
        n = self.pack_number(pack_id, size)
        for e in entries:
            if e.id not in self._delta and self._find(e.id) < 0:
                self._delta[e.id] = (n, e.type, e.offset, e.length, e.raw_length)
        if len(self._delta) >= _MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        if not self._delta:
            return
        pack = SEG_RECORD.pack
        self._insert([pack(cid, n, off, length, raw, btype)
                      for cid, (n, btype, off, length, raw) in self._delta.items()])
        self._delta.clear()

    def _insert(self, records: list[bytes]) -> None:
        """Merge SEG_RECORD-shaped records (pack numbers already the index's) into the sorted rows.

        Sorting whole records sorts by id (it comes first). An id already indexed keeps its
        location; of ids repeated among the new records (a chunk stored twice, e.g. by an
        interrupted run) one is kept. Into an empty index the columns are gathered from one
        joined buffer (_columns); into a filled one (a night's chunks into a large index) the
        existing rows are copied in slices between insertion points, a few memcpys.
        """
        records.sort()  # fast on the sorted runs that segments are written as
        if not self._keys:
            keys, rows = _columns(records)
            if any(map(eq, keys, islice(keys, 1, None))):  # equal 8-byte prefixes: maybe an id twice
                keys, rows = _drop_repeats(keys, rows)
            self._keys, self._rows = keys, rows
            return
        keys, rows = self._keys, self._rows
        out_keys, out_rows = array("Q"), bytearray()
        done = 0  # existing rows copied so far
        last = None
        for rec in records:
            cid = rec[:32]
            if cid == last:
                continue
            last = cid
            k = int.from_bytes(rec[:8], "big")
            i, known = self._locate(k, rec[8:32], done)
            if known:
                continue
            if i > done:
                out_keys.extend(keys[done:i])
                out_rows += memoryview(rows)[done * ROW.size:i * ROW.size]
                done = i
            out_keys.append(k)
            out_rows += rec[8:]
        if not out_keys:
            return  # every record was indexed already
        out_keys.extend(keys[done:])
        out_rows += memoryview(rows)[done * ROW.size:]
        self._keys, self._rows = out_keys, out_rows

    def _locate(self, k: int, tail: bytes, lo: int = 0) -> tuple[int, bool]:
        """Where the id with key k and remaining bytes `tail` is, or would be inserted (rows are in
        full-id order, also among the rare equal keys), and whether it is there."""
        keys, rows, size = self._keys, self._rows, ROW.size
        i = bisect_left(keys, k, lo)
        while i < len(keys) and keys[i] == k:
            have = rows[i * size:i * size + 24]
            if have >= tail:
                return i, have == tail
            i += 1
        return i, False

    def _find(self, cid: bytes) -> int:
        i, known = self._locate(int.from_bytes(cid[:8], "big"), cid[8:])
        return i if known else -1

    def __contains__(self, cid: bytes) -> bool:
        return cid in self._delta or self._find(cid) >= 0

    def _row(self, i: int) -> tuple[int, int, int, int, int]:
        _, pack, offset, length, raw, btype = ROW.unpack_from(self._rows, i * ROW.size)
        return pack, btype, offset, length, raw

    def get(self, cid: bytes) -> Location | None:
        d = self._delta.get(cid)
        if d is None:
            i = self._find(cid)
            if i < 0:
                return None
            d = self._row(i)
        pack, btype, offset, length, raw = d
        return Location(self.pack_ids[pack], btype, offset, length, raw)

    def row_id(self, i: int) -> bytes:
        return self._keys[i].to_bytes(8, "big") + bytes(self._rows[i * ROW.size:i * ROW.size + 24])

    def entries(self) -> Iterator[tuple[bytes, Location]]:
        """Every (chunk id, location); for check and prune."""
        self._merge()
        for i in range(len(self._keys)):
            pack, btype, offset, length, raw = self._row(i)
            yield self.row_id(i), Location(self.pack_ids[pack], btype, offset, length, raw)

    def pack_entries(self, pack_id: str) -> list[PackEntry]:
        """What the index knows a pack holds, including copies left out as damaged (one scan of the
        pack column: for the rare pack whose own header cannot be read)."""
        n = self._pack_no.get(pack_id)
        out = [PackEntry(loc.type, cid, loc.offset, loc.length, loc.raw_length)
               for cid, loc in self.lost.items() if loc.pack_id == pack_id]
        if n is None:
            return out
        for r, p in enumerate(self.column("pack")):
            if p == n:
                _, btype, offset, length, raw = self._row(r)
                out.append(PackEntry(btype, self.row_id(r), offset, length, raw))
        return sorted(out, key=lambda e: e.offset)

    def by_pack(self) -> dict[str, list[PackEntry]]:
        """Every entry grouped by pack, with the copies left out as damaged (repair: one pass)."""
        out: dict[str, list[PackEntry]] = {}
        for cid, loc in self.entries():
            out.setdefault(loc.pack_id, []).append(PackEntry(loc.type, cid, loc.offset, loc.length, loc.raw_length))
        for cid, loc in self.lost.items():
            out.setdefault(loc.pack_id, []).append(PackEntry(loc.type, cid, loc.offset, loc.length, loc.raw_length))
        return out

    def freeze(self) -> None:
        self._merge()

    def known(self, ids: list[bytes]) -> list[bool]:
        """Membership of many ids (a backup asks for each block's chunks at once)."""
        delta, find = self._delta, self._find
        return [cid in delta or find(cid) >= 0 for cid in ids]

    def rows_of(self, ids: Iterable[bytes]) -> list[int]:
        """Row numbers of ids, -1 where unknown; rows index column() (prune, stats)."""
        self._merge()
        return [self._find(cid) for cid in ids]

    def column(self, name: str) -> array:
        """One per-row field (pack, offset, length, raw, type), aligned with rows_of()."""
        self._merge()
        if name == "type":
            return array("B", self._rows[ROW.size - 1::ROW.size])
        return _u32_field(self._rows, 24 + 4 * COLUMNS.index(name), ROW.size)


def _drop_repeats(keys: array, rows: bytearray) -> tuple[array, bytearray]:
    """Keep one row per id (rows sorted by whole record, so an id's rows are adjacent)."""
    out_keys, out_rows, size = array("Q"), bytearray(), ROW.size
    prev = None
    for i, k in enumerate(keys):
        ident = (k, bytes(rows[i * size:i * size + 24]))
        if ident != prev:
            out_keys.append(k)
            out_rows += rows[i * size:(i + 1) * size]
            prev = ident
    return out_keys, out_rows


def _pack_table(names: Sequence[str], sizes: Sequence[int]) -> bytes:
    return b"".join(_PACK.pack(bytes.fromhex(name), size) for name, size in zip(names, sizes))


def _segment(sup: list[str], names: Sequence[str], sizes: Sequence[int], records: list[bytes]) -> bytes:
    head = _MAGIC + struct.pack("<III", len(sup), len(names), len(records))
    return head + b"".join(bytes.fromhex(s) for s in sup) + _pack_table(names, sizes) + b"".join(records)


def encode_segment(packs: list[tuple[str, int, list[PackEntry]]], supersedes: Iterable[str] = ()) -> bytes:
    """Plaintext of an index segment: superseded segment ids, packs (id, size), then entries."""
    pack = SEG_RECORD.pack
    records = [pack(e.id, n, e.offset, e.length, e.raw_length, e.type)
               for n, (_, _, entries) in enumerate(packs) for e in entries]
    records.sort()  # sorted runs load fast (ChunkIndex._insert)
    return _segment(list(supersedes), [p for p, _, _ in packs], [s for _, s, _ in packs], records)


def encode_segment_rows(index: ChunkIndex, rows: Iterable[int], extra: list[tuple[str, int, list[PackEntry]]],
                        supersedes: Iterable[str]) -> bytes:
    """A segment holding the given index rows plus extra packs (prune: everything that stays)."""
    index.freeze()
    renumber: dict[int, int] = {}
    records = []
    pack, view, size = SEG_RECORD.pack, index._rows, ROW.size
    for r in rows:
        tail, pno, offset, length, raw, btype = ROW.unpack_from(view, r * size)
        n = renumber.setdefault(pno, len(renumber))
        records.append(pack(index._keys[r].to_bytes(8, "big") + tail, n, offset, length, raw, btype))
    used = sorted(renumber, key=renumber.__getitem__)
    names = [index.pack_ids[i] for i in used] + [p for p, _, _ in extra]
    sizes = [index.pack_sizes[i] for i in used] + [s for _, s, _ in extra]
    records += [pack(e.id, len(used) + n, e.offset, e.length, e.raw_length, e.type)
                for n, (_, _, entries) in enumerate(extra) for e in entries]
    records.sort()
    return _segment(list(supersedes), names, sizes, records)


def decode_segment(plain: bytes, name: str) -> tuple[list[str], list[tuple[str, int]], bytes]:
    """(superseded ids, [(pack id, size)], the entries: SEG_RECORD records back to back)."""
    if plain[:4] != _MAGIC or len(plain) < 16:
        raise CorruptObject(f"index segment {name[:16]} has an unknown format")
    nsup, npacks, nent = struct.unpack("<III", plain[4:16])
    expect = 16 + nsup * 32 + npacks * _PACK.size + nent * SEG_RECORD.size
    if len(plain) != expect:
        raise CorruptObject(f"index segment {name[:16]} is malformed")
    off = 16
    sup = [plain[off + 32 * i: off + 32 * (i + 1)].hex() for i in range(nsup)]
    off += 32 * nsup
    view = memoryview(plain)
    packs = [(pid.hex(), size) for pid, size in _PACK.iter_unpack(view[off:off + npacks * _PACK.size])]
    off += npacks * _PACK.size
    etab = bytes(view[off:])
    if nent and max(_u32_field(etab, 32)) >= npacks:
        raise CorruptObject(f"index segment {name[:16]} refers to an unknown pack")
    return sup, packs, etab


def drop_damaged(packs: list[tuple[str, int]], etab: bytes,
                 damaged: Callable[[str], frozenset[bytes] | None | bool]) -> tuple[bytes, dict[bytes, Location]]:
    """A decoded segment's entries without those recorded as damaged, and what was dropped.

    `damaged(pack)` is False for a sound pack, None when all of its blobs count as damaged, or
    the set of damaged blob ids. Only segments naming a damaged pack are copied.
    """
    verdicts = [damaged(p) for p, _ in packs]
    if not any(v is not False for v in verdicts):
        return etab, {}
    kept, lost = bytearray(), {}
    for rec in SEG_RECORD.iter_unpack(etab):
        cid, pno, offset, length, raw, btype = rec
        verdict = verdicts[pno]
        if verdict is None or (verdict is not False and cid in verdict):
            lost[cid] = Location(packs[pno][0], btype, offset, length, raw)
        else:
            kept += SEG_RECORD.pack(*rec)
    return bytes(kept), lost


def load_segment_into(index: ChunkIndex, packs: list[tuple[str, int]], etab: bytes) -> None:
    """Load one decoded segment."""
    load_segments_into(index, [(packs, etab)])


def load_segments_into(index: ChunkIndex, segments: list[tuple[list[tuple[str, int]], bytes]]) -> None:
    """Load many decoded segments with one sort and one merge.

    Merging segment by segment would copy the growing index once per segment (2,000 checkpoint
    segments took 52 s that way); renumbering their packs and sorting all records once is linear
    apart from the sort.
    """
    records: list[bytes] = []
    size = SEG_RECORD.size
    for packs, etab in segments:
        numbers = [index.pack_number(p, s) for p, s in packs]
        raw = bytes(etab)
        if numbers != list(range(len(numbers))):  # numbered differently in the index: renumber
            buf = bytearray(raw)
            _set_u32_field(buf, 32, array("I", [numbers[n] for n in _u32_field(raw, 32)]))
            raw = bytes(buf)
        records += [raw[i:i + size] for i in range(0, len(raw), size)]
    if records:
        index._merge()
        index._insert(records)


def _u32_field(raw: bytes | bytearray, at: int, stride: int = SEG_RECORD.size) -> array:
    """The little-endian u32 at byte `at` of every fixed-size record, gathered with strided slices (in C)."""
    out = bytearray(len(raw) // stride * 4)
    for j in range(4):
        out[j::4] = raw[at + j::stride]
    values = array("I")
    values.frombytes(out)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _set_u32_field(records: bytearray, at: int, values: array) -> None:
    if sys.byteorder == "big":
        values.byteswap()
    raw = values.tobytes()
    for j in range(4):
        records[at + j::SEG_RECORD.size] = raw[j::4]
