"""Restore a snapshot to an image file (sparse) or a block device.

Plan: chunk list -> (pack, offset) per chunk -> grouped by pack and coalesced into large ranged
reads -> parallel download, authenticate, decompress, check id -> pwrite at every image offset
that chunk appears. Zero runs become holes in files, and zeroed ranges on devices.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.allocator import keep_freed
from agent.errors import AgentError, CorruptObject
from agent.progress import Advanced, Finished, Listener, Started, Warning, ignore
from agent.repo.chunklist import DATA
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex, Location
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.repo.writer import adopt_orphan_packs
from agent.restore.options import RestoreOptions, RestoreResult
from agent.restore.target import TargetFull, open_target, pwrite_all, remove_partial, write_error, zero_device

_GAP = 256 << 10  # read across gaps smaller than this rather than issue another request
_MAX_READ = 4 << 20  # per request; three in flight bound a restore's memory (8 MiB x 4 held 30 MB more, no faster)


@dataclass
class _Blob:
    cid: bytes
    pack: str
    offset: int  # in pack
    length: int
    raw: int
    targets: list[int]  # image offsets


def _ranges(blobs: list[_Blob]) -> list[list[_Blob]]:
    blobs.sort(key=lambda b: b.offset)
    out: list[list[_Blob]] = []
    for b in blobs:
        if out:
            last = out[-1]
            start, end = last[0].offset, last[-1].offset + last[-1].length
            if b.offset - end <= _GAP and b.offset + b.length - start <= _MAX_READ:
                last.append(b)
                continue
        out.append([b])
    return out


def run_restore(repo: Repository, snap: Snapshot, target: str, opts: RestoreOptions | None = None,
                listener: Listener = ignore) -> RestoreResult:
    opts = opts or RestoreOptions()
    t0 = time.monotonic()
    keep_freed(32 << 20)
    with repo.lock(exclusive=False, command="restore", wait=opts.lock_wait):
        return _restore(repo, snap, target, opts, listener, t0)


def _clip(offset: int, length: int, window: tuple[int, int]) -> tuple[int, int] | None:
    """An image range as target offsets when restoring only `window` (start, length); None outside it."""
    start, size = window
    lo, hi = max(offset, start), min(offset + length, start + size)
    return (lo - start, hi - lo) if lo < hi else None


def _plan(repo: Repository, index: ChunkIndex, snap: Snapshot, ignore_errors: bool,
          window: tuple[int, int]) -> tuple[dict[bytes, _Blob], list[tuple[int, int]], list[tuple[int, int]]]:
    """Where each chunk of `window` is stored: (blobs by id, zero runs and ranges of missing chunks,
    both as target offsets). Only chunks that overlap the window are fetched."""
    blobs: dict[bytes, _Blob] = {}
    zero_runs: list[tuple[int, int]] = []
    missing: list[tuple[int, int]] = []
    for ext in repo.snapshot_extents(index, snap):
        clipped = _clip(ext.offset, ext.length, window)
        if clipped is None:
            continue
        if ext.kind != DATA:
            zero_runs.append(clipped)
            continue
        b = blobs.get(ext.id)
        if b is None:
            loc = index.get(ext.id)
            if loc is None and ext.id in index.lost and _still_sound(repo, ext.id, index.lost[ext.id]):
                loc = index.lost[ext.id]
            if loc is None:
                if not ignore_errors:
                    damaged = index.lost.get(ext.id)
                    if damaged is not None:
                        raise CorruptObject(
                            f"chunk {ext.id.hex()[:16]} at image offset {ext.offset} is lost: `agent check` found "
                            f"its pack {damaged.pack_id[:16]} damaged",
                            hint="--ignore-errors writes zeros there and restores the rest; a backup of the same "
                                 "disk uploads the chunk again if the disk still holds it")
                    raise CorruptObject(f"chunk {ext.id.hex()[:16]} at image offset {ext.offset} is missing from "
                                        "the repository")
                missing.append(clipped)
                continue
            b = blobs[ext.id] = _Blob(ext.id, loc.pack_id, loc.offset, loc.length, loc.raw_length, [])
        b.targets.append(ext.offset)
    return blobs, zero_runs, missing


def _still_sound(repo: Repository, cid: bytes, loc: Location) -> bool:
    """Whether a copy `check` recorded as damaged authenticates after all: when there is no other
    copy it is tried, since a record may be stale or forged (docs/security.md)."""
    try:
        repo.open_blob(BlobType(loc.type), cid, repo.read_pack_range(loc.pack_id, loc.offset, loc.length),
                       loc.raw_length)
    except (CorruptObject, ValueError):
        return False
    return True


def _restore(repo: Repository, snap: Snapshot, target: str, opts: RestoreOptions, listener: Listener,
             t0: float) -> RestoreResult:
    bad_segments: list[tuple[str, str]] = []
    index = repo.load_index(bad_segments)
    for name, problem in bad_segments:
        listener(Warning(f"index segment {name[:16]} is damaged and ignored ({problem}); reading pack headers "
                         "instead (the next backup writes a new segment)"))
    # Chunks the index does not know may sit in packs no segment lists (a damaged or lost segment):
    # find them from the packs' own headers, in memory, before calling anything missing.
    # A second call finds nothing new, so each fallback below plans again at most once.
    def adopt() -> bool:
        found = adopt_orphan_packs(repo, index, listener, write=False)
        if found:
            listener(Warning(f"{len(found)} pack(s) are in no index segment; their headers were read instead "
                             "(the next backup indexes them again)"))
        return bool(found)

    window = opts.window or (0, snap.size)
    if bad_segments:
        adopt()
    try:
        blobs, zero_runs, missing = _plan(repo, index, snap, opts.ignore_errors, window)
    except CorruptObject:
        if not adopt():
            raise
        blobs, zero_runs, missing = _plan(repo, index, snap, opts.ignore_errors, window)
    if missing and adopt():
        blobs, zero_runs, missing = _plan(repo, index, snap, opts.ignore_errors, window)
    by_pack: dict[str, list[_Blob]] = defaultdict(list)
    for b in blobs.values():
        by_pack[b.pack].append(b)

    size = window[1]
    fd, kind, created = open_target(target, size, opts.force, opts.disk_size)
    listener(Started("restore", size))
    damaged = list(missing)
    written = 0

    def fetch(pack_id: str, group: list[_Blob]) -> tuple[int, list[tuple[int, int]]]:
        start = group[0].offset
        end = group[-1].offset + group[-1].length
        bad: list[tuple[int, int]] = []
        done = 0
        try:
            data = memoryview(repo.read_pack_range(pack_id, start, end - start))
        except AgentError:
            if not opts.ignore_errors:
                raise
            data = None
        for b in group:
            try:
                if data is None:
                    raise CorruptObject(f"pack {pack_id[:16]} unreadable")
                raw = repo.open_blob(BlobType.DATA, b.cid, data[b.offset - start:b.offset - start + b.length], b.raw)
            except CorruptObject as exc:
                if not opts.ignore_errors:
                    raise CorruptObject(f"pack {pack_id[:16]}: {exc}; image bytes {b.targets[0]}.."
                                        f"{b.targets[0] + b.raw} cannot be restored",
                                        hint="run `agent check --read-data`; --ignore-errors writes zeros there "
                                             "and lists the damaged ranges") from None
                bad.extend(r for t in b.targets if (r := _clip(t, b.raw, window)) is not None)
                continue
            for t in b.targets:
                at, n = _clip(t, len(raw), window) or (0, 0)
                if n:  # a chunk across the window's edge is fetched whole and written in part
                    skip = at + window[0] - t
                    pwrite_all(fd, memoryview(raw)[skip:skip + n], at, target)
                    done += n
        return done, bad

    try:
        try:
            pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="restore")
            try:
                jobs = [pool.submit(fetch, p, g) for p, blist in by_pack.items() for g in _ranges(blist)]
                for fut in jobs:
                    n, bad = fut.result()
                    written += n
                    damaged.extend(bad)
                    listener(Advanced(written))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            zero_bytes = sum(n for _, n in zero_runs)
            if kind == "block":
                for off, n in zero_runs + damaged:
                    zero_device(fd, off, n, target)
            if kind == "block" or opts.sync:
                # a disk is about to be booted or removed; an image file is flushed by the kernel within
                # seconds (like restic and borg, which never fsync), unless --sync asks to wait for it
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise write_error(exc, target) from None
        finally:
            os.close(fd)
    except TargetFull as exc:  # only a file this restore created; never a device or an existing file
        if created:
            raise remove_partial(target, exc) from None
        raise
    for off, n in sorted(damaged):
        listener(Warning(f"damaged range written as zeros: bytes {off}..{off + n} ({n} bytes)"))
    listener(Finished("restore"))
    return RestoreResult(snapshot_id=snap.id, target=target, size=size, written_bytes=written,
                         zero_bytes=zero_bytes, duration_s=round(time.monotonic() - t0, 3), damaged=sorted(damaged))
