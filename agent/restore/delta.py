"""Delta and seed planning: which chunks of the snapshot a local image already holds.

The target (`--delta`) and each seed (`--seed`) are read along the snapshot's own chunk
boundaries in large reads, and each chunk is hashed with the repository's keyed chunk id (BLAKE3,
native, the GIL released, so two threads hash on two cores); Python runs once per chunk, never per
byte. A chunk whose id matches needs no download: in the target it stays, from a seed (or from
another place in the target) it is copied, checked again by id when copied.
"""

from __future__ import annotations

import bisect
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.errors import TargetError
from agent.repo.chunklist import DATA, Extent
from agent.source.spans import SpanReader

_SPAN = 8 << 20  # one read; a chunk list's chunks are at most 16 MiB, so a span holds at least one
_RESYNC = 32 << 20  # ranges cut by the chunker at a time (a chunk across two is not found)
_ZEROS = bytes(256 << 10)  # compared against, never written
_SEEK_DATA, _SEEK_HOLE = getattr(os, "SEEK_DATA", 3), getattr(os, "SEEK_HOLE", 4)


def is_zero(view: memoryview) -> bool:
    """All bytes zero? memcmp against a constant (bytes.startswith), 256 KiB at a time."""
    step = len(_ZEROS)
    return all(_ZEROS.startswith(view[i:i + step]) for i in range(0, len(view), step))


@dataclass
class Scan:
    """What one local image holds of the snapshot, in target offsets."""

    path: str
    matched: set[int] = field(default_factory=set)  # target offsets of data chunks whose bytes are right
    sources: dict[bytes, int] = field(default_factory=dict)  # chunk id -> a target offset holding it
    not_zero: list[tuple[int, int]] = field(default_factory=list)  # pieces of zero runs that read otherwise
    unmatched: list[tuple[int, int]] = field(default_factory=list)  # data ranges that differ (for `resync`)
    matched_bytes: int = 0  # data and zeros already right
    scanned_bytes: int = 0


@dataclass(frozen=True)
class _Item:
    at: int  # target offset
    length: int
    cid: bytes | None  # None: a piece of a zero run


def _items(extents: Iterable[Extent], window: tuple[int, int], limit: int, zeros: bool) -> Iterator[_Item]:
    """What to check, in target order: data chunks wholly inside `window` and the first `limit` bytes
    (a chunk across a partition's edge cannot be checked by id, so it is fetched), and the zero runs
    clipped to them in pieces of at most one read."""
    start, size = window
    end = start + min(size, limit)
    for ext in extents:
        if ext.kind == DATA:
            if ext.offset >= start and ext.offset + ext.length <= end:
                yield _Item(ext.offset - start, ext.length, ext.id)
        elif zeros:
            lo, hi = max(ext.offset, start), min(ext.offset + ext.length, end)
            for piece in range(lo, hi, _SPAN):
                yield _Item(piece - start, min(_SPAN, hi - piece), None)


def _spans(items: list[_Item]) -> Iterator[list[_Item]]:
    group: list[_Item] = []
    for item in items:
        if group and (item.at != group[-1].at + group[-1].length or item.at + item.length - group[0].at > _SPAN):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def data_ranges(fd: int, size: int) -> list[tuple[int, int]] | None:
    """The allocated ranges of a sparse file (SEEK_DATA/SEEK_HOLE); None where the file system cannot say."""
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, _SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                raise
            end = min(os.lseek(fd, start, _SEEK_HOLE), size)
            out.append((start, end - start))
            pos = end
    except OSError:
        return None
    return out


def _in_hole(holes_map: list[tuple[int, int]] | None, at: int, length: int) -> bool:
    """Whether [at, at+length) lies in no allocated range (reads as zeros without reading)."""
    if holes_map is None:
        return False
    i = bisect.bisect_right(holes_map, (at, 1 << 62)) - 1
    for off, n in holes_map[max(i, 0):]:
        if off >= at + length:
            break
        if off + n > at:
            return False
    return True


def scan(fd: int, path: str, size: int, extents: list[Extent], window: tuple[int, int],
         chunk_id: Callable[[memoryview], bytes], zeros: bool, workers: int = 4,
         progress: Callable[[int], None] = lambda n: None,
         supply: Callable[[bytes, memoryview, int], None] | None = None) -> Scan:
    """Hash the local image `fd` (`size` bytes) along the snapshot's chunk boundaries; with `zeros`,
    also check that the zero runs read as zeros (a target; a seed supplies only data). `supply`
    receives each matching chunk's id, bytes and offset on the hashing thread, while they are in
    memory: a seed's chunks are written from there, not read and hashed a second time."""
    out = Scan(path)
    allocated = data_ranges(fd, size)
    todo: list[_Item] = []
    for item in _items(extents, window, size, zeros):
        if _in_hole(allocated, item.at, item.length):  # zeros without reading; a data chunk is never all zeros
            if item.cid is None:
                out.matched_bytes += item.length
        else:
            todo.append(item)

    def check(group: list[_Item]) -> list[tuple[_Item, bool]]:
        first = group[0].at
        length = group[-1].at + group[-1].length - first
        try:
            data = reader.read(first, length)
        except OSError as exc:
            raise TargetError(f"reading {path} failed: {exc.strerror}") from None
        res = []
        for item in group:
            view = data[item.at - first:item.at - first + item.length]
            if len(view) < item.length:
                res.append((item, False))
            elif item.cid is not None:
                ok = chunk_id(view) == item.cid
                if ok and supply is not None:
                    supply(item.cid, view, item.at)
                res.append((item, ok))
            else:
                res.append((item, is_zero(view)))
        return res

    with SpanReader(fd, path) as reader, ThreadPoolExecutor(workers, thread_name_prefix="delta-hash") as pool:
        for results in pool.map(check, _spans(todo)):
            for item, ok in results:
                out.scanned_bytes += item.length
                if ok:
                    out.matched_bytes += item.length
                    if item.cid is not None:
                        out.matched.add(item.at)
                        out.sources.setdefault(item.cid, item.at)
                else:
                    if item.cid is None:
                        out.not_zero.append((item.at, item.length))
                    if out.unmatched and out.unmatched[-1][0] + out.unmatched[-1][1] == item.at:
                        out.unmatched[-1] = (out.unmatched[-1][0], out.unmatched[-1][1] + item.length)
                    else:
                        out.unmatched.append((item.at, item.length))
            progress(out.scanned_bytes)
    return out


def known(held: list[Extent], extents: list[Extent], window: tuple[int, int]) -> tuple[Scan, dict[bytes, int]]:
    """What `scan` would find in a target that holds the snapshot whose extents are `held` (its
    stamp says so, agent.restore.stamp), without reading it: a chunk is right where `held` has the
    same chunk at the same place, a zero run where `held` has zeros. Also returns the chunks `held`
    has elsewhere (id -> target offset): their places are about to be overwritten, so they are
    read and checked by id before anything is written (`preload`), like chunks `resync` finds."""
    start, size = window
    at_offset = {e.offset: (e.length, e.id) for e in held if e.kind == DATA}
    zeros: list[tuple[int, int]] = []
    for e in held:
        if e.kind != DATA:
            if zeros and zeros[-1][1] == e.offset:
                zeros[-1] = (zeros[-1][0], e.offset + e.length)
            else:
                zeros.append((e.offset, e.offset + e.length))
    starts = [z[0] for z in zeros]
    out = Scan("")
    elsewhere: dict[bytes, int] = {}
    for e in held:
        if e.kind == DATA and e.offset >= start and e.offset + e.length <= start + size:
            elsewhere.setdefault(e.id, e.offset - start)
    for item in _items(extents, window, size, zeros=True):
        pos = item.at + start
        if item.cid is not None:
            ok = at_offset.get(pos) == (item.length, item.cid)
        else:  # a piece of a zero run: within one of `held`'s zero runs (merged above)
            i = bisect.bisect_right(starts, pos) - 1
            ok = i >= 0 and zeros[i][1] >= pos + item.length
        if ok:
            out.matched_bytes += item.length
            if item.cid is not None:
                out.matched.add(item.at)
                out.sources.setdefault(item.cid, item.at)
        elif item.cid is None:
            out.not_zero.append((item.at, item.length))
    moved = {cid: at for cid, at in elsewhere.items() if cid not in out.sources}
    return out, moved


def resync(fd: int, path: str, found: Scan, cut: Callable[[memoryview], Iterable],
           chunk_id: Callable[[memoryview], bytes], wanted: set[bytes], workers: int = 2) -> dict[bytes, int]:
    """Find chunks that moved: cut the ranges where the image differs with the repository's own
    content-defined chunker (its cut points follow the content, so data shifted by an insertion is cut
    as it was when it was backed up) and hash those chunks. Ids in `wanted` become sources.
    Returns the sources found this way (id -> offset)."""
    pieces: list[tuple[int, int]] = []
    for at, n in found.unmatched:
        pieces.extend((p, min(_RESYNC, at + n - p)) for p in range(at, at + n, _RESYNC))

    def check(piece: tuple[int, int]) -> list[tuple[bytes, int, int]]:
        at, n = piece
        try:
            data = reader.read(at, n)
        except OSError as exc:
            raise TargetError(f"reading {path} failed: {exc.strerror}") from None
        out = []
        for c in cut(data):  # the first and last cut of a piece may be partial: they just match nothing
            cid = chunk_id(data[c.offset:c.offset + c.length])
            if cid in wanted:
                out.append((cid, at + c.offset, c.length))
        return out

    got: dict[bytes, int] = {}
    with SpanReader(fd, path) as reader, ThreadPoolExecutor(workers, thread_name_prefix="delta-resync") as pool:
        for hits in pool.map(check, pieces):
            for cid, at, _ in hits:
                if cid not in found.sources:
                    found.sources[cid] = got[cid] = at
    return got


def preload(fd: int, moved: dict[bytes, int], lengths: dict[bytes, int], chunk_id: Callable[[memoryview], bytes],
            budget: int) -> dict[bytes, bytes]:
    """Read chunks that moved within the target before anything is written: their places are about to
    be overwritten. At most `budget` bytes are held; the rest is fetched instead."""
    out: dict[bytes, bytes] = {}
    held = 0
    for cid, at in sorted(moved.items(), key=lambda kv: kv[1]):
        n = lengths[cid]
        if held + n > budget:
            break
        try:
            data = os.pread(fd, n, at)
        except OSError:
            continue
        if len(data) == n and chunk_id(memoryview(data)) == cid:
            out[cid] = data
            held += n
    return out


def open_seed(path: str) -> tuple[int, int]:
    """(read-only descriptor, size) of a seed image; one clear line when it cannot be read."""
    from agent.source.device import size_of

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TargetError(f"seed {path} does not exist") from None
    except OSError as exc:
        raise TargetError(f"cannot open seed {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        os.close(fd)
        raise TargetError(f"seed {path} is neither an image file nor a block device")
    return fd, size_of(fd, "block" if stat.S_ISBLK(st.st_mode) else "file")


def copy_chunks(items: list[tuple[int, int, int, bytes, list[int]]], chunk_id: Callable[[memoryview], bytes],
                write: Callable[[memoryview, int], None],
                preloaded: dict[bytes, bytes]) -> tuple[list[tuple[int, int]], list[bytes], int]:
    """Copy chunks from local images: items of (source fd, source offset, length, id, target offsets);
    a source fd of -1 takes the chunk from `preloaded` (moved within the target). Each is read and
    checked by id again before it is written (a seed may have changed since it was scanned).
    Returns (target ranges written, ids that no longer matched, bytes read)."""
    written: list[tuple[int, int]] = []
    stale: list[bytes] = []
    read = 0
    for src, off, length, cid, targets in items:
        try:
            data = memoryview(preloaded.pop(cid, b"") if src < 0 else os.pread(src, length, off))
        except OSError:
            stale.append(cid)
            continue
        read += length
        if len(data) != length or chunk_id(data) != cid:
            stale.append(cid)
            continue
        for at in targets:
            write(data, at)
            written.append((at, length))
    return written, stale, read


def verify(fd: int, path: str, items: list[tuple[int, int, bytes | None]], chunk_id: Callable[[memoryview], bytes],
           workers: int = 2) -> tuple[int, list[tuple[int, int]]]:
    """Read back what this run wrote, (target offset, length, id or None for zeros), and check each
    piece by id or for zeros. Returns (bytes verified, ranges that read back wrong)."""
    items = sorted(items)
    groups: list[list[tuple[int, int, bytes | None]]] = []
    for it in items:
        if groups and it[0] < groups[-1][0][0] + _SPAN and it[0] + it[1] - groups[-1][0][0] <= _SPAN:
            groups[-1].append(it)
        else:
            groups.append([it])

    def check(group: list[tuple[int, int, bytes | None]]) -> list[tuple[int, int]]:
        bad = []
        for at, n, cid in group:
            try:
                if cid is None:
                    for piece in range(at, at + n, _SPAN):
                        m = min(_SPAN, at + n - piece)
                        view = memoryview(os.pread(fd, m, piece))
                        if not (len(view) == m and is_zero(view)):
                            bad.append((piece, m))
                elif chunk_id(memoryview(os.pread(fd, n, at))) != cid:
                    bad.append((at, n))
            except OSError as exc:
                raise TargetError(f"reading back {path} failed: {exc.strerror}") from None
        return bad

    wrong: list[tuple[int, int]] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="delta-verify") as pool:
        for bad in pool.map(check, groups):
            wrong.extend(bad)
    return sum(n for _, n, _ in items), wrong
