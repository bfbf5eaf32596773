"""Restore a snapshot to an image file (sparse) or a block device.

Plan: chunk list -> (pack, offset) per chunk -> grouped by pack and coalesced into large ranged
reads -> parallel download, authenticate, decompress, check id -> pwrite at every image offset
that chunk appears. Zero runs become holes in files, and zeroed ranges on devices.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from agent.allocator import keep_freed
from agent.errors import AgentError, CorruptObject, TargetError
from agent.progress import Advanced, Finished, Listener, Started, Warning, ignore
from agent.repo.chunklist import DATA, Extent
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex, Location
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.repo.writer import adopt_orphan_packs
from agent.restore.delta import copy_chunks
from agent.restore.journal import Header, prepare
from agent.restore.options import RestoreOptions, RestoreResult
from agent.restore.plan import Blob, Work, check_same, clip, narrow, read_back
from agent.restore.target import TargetFull, punch, pwrite_all, remove_partial, write_error, zero_device

_GAP = 256 << 10  # read across gaps smaller than this rather than issue another request
_MAX_READ = 4 << 20  # per request; three in flight bound a restore's memory (8 MiB x 4 held 30 MB more, no faster)


def _ranges(blobs: list[Blob]) -> list[list[Blob]]:
    blobs.sort(key=lambda b: b.offset)
    out: list[list[Blob]] = []
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


def _plan(repo: Repository, index: ChunkIndex, extents: list[Extent], ignore_errors: bool,
          window: tuple[int, int]) -> tuple[dict[bytes, Blob], list[tuple[int, int]], list[tuple[int, int]]]:
    """Where each chunk of `window` is stored: (blobs by id, zero runs and ranges of missing chunks,
    both as target offsets). Only chunks that overlap the window are fetched."""
    blobs: dict[bytes, Blob] = {}
    zero_runs: list[tuple[int, int]] = []
    missing: list[tuple[int, int]] = []
    for ext in extents:
        clipped = clip(ext.offset, ext.length, window)
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
            b = blobs[ext.id] = Blob(ext.id, loc.pack_id, loc.offset, loc.length, loc.raw_length, [])
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
    extents: list[Extent] = []

    def plan() -> tuple[dict[bytes, Blob], list[tuple[int, int]], list[tuple[int, int]]]:
        extents[:] = repo.snapshot_extents(index, snap)
        return _plan(repo, index, extents, opts.ignore_errors, window)

    if bad_segments:
        adopt()
    try:
        blobs, zero_runs, missing = plan()
    except CorruptObject:
        if not adopt():
            raise
        blobs, zero_runs, missing = plan()
    if missing and adopt():
        blobs, zero_runs, missing = plan()

    size = window[1]
    prep = prepare(target, Header(snap.id, window, size), opts.force, opts.delta, opts.journal_dir,
                   opts.journal_interval)
    fd, kind, created, journal = prep.fd, prep.kind, prep.created, prep.journal
    try:
        cdc = repo.new_chunker()
        work = narrow(repo.chunk_id, cdc.cut_buf, fd, target, kind, created, blobs, zero_runs, extents, window,
                      prep.done, opts, listener)
    except BaseException:  # a seed that cannot be read, Ctrl-C while comparing: nothing written yet
        if journal is not None:
            journal.close()
            if created:
                journal.path.unlink(missing_ok=True)
        os.close(fd)
        if created:
            os.unlink(target)
        raise
    blobs, zero_runs, zero_bytes, verified = work.blobs, work.zero_runs, work.zero_bytes, 0
    by_pack: dict[str, list[Blob]] = defaultdict(list)
    for b in blobs.values():
        by_pack[b.pack].append(b)

    listener(Started("restore", size))
    damaged = list(missing)
    written = 0

    def fetch(pack_id: str, group: list[Blob]) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        start = group[0].offset
        end = group[-1].offset + group[-1].length
        bad: list[tuple[int, int]] = []
        done: list[tuple[int, int]] = []
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
                bad.extend(r for t in b.targets if (r := clip(t, b.raw, window)) is not None)
                continue
            for t in b.targets:
                at, n = clip(t, len(raw), window) or (0, 0)
                if n:  # a chunk across the window's edge is fetched whole and written in part
                    skip = at + window[0] - t
                    pwrite_all(fd, memoryview(raw)[skip:skip + n], at, target)
                    done.append((at, n))
        return sum(n for _, n in done), bad, done

    def copy(items: list) -> tuple[int, list[tuple[int, int]], list[bytes]]:
        done, stale, _ = copy_chunks(items, repo.chunk_id, lambda data, at: pwrite_all(fd, data, at, target),
                                     work.preloaded)
        return sum(n for _, n in done), done, stale

    def record(done: list[tuple[int, int]]) -> None:
        if journal is not None:
            if journal.error is not None:
                raise write_error(journal.error, target)
            journal.written(done)

    try:
        try:
            pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="restore")
            try:
                for copied in [pool.submit(copy, items) for items in work.copies]:
                    n, done, stale = copied.result()
                    written += n
                    record(done)
                    listener(Advanced(written))
                    for cid in stale:  # the seed changed since it was scanned: fetch instead
                        b = work.copied.pop(cid)
                        by_pack[b.pack].append(b)
                jobs = [pool.submit(fetch, p, g) for p, blist in by_pack.items() for g in _ranges(blist)]
                for fut in jobs:
                    n, bad, done_ranges = fut.result()
                    written += n
                    damaged.extend(bad)
                    record(done_ranges)
                    check_same(target, fd, kind)
                    listener(Advanced(written))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            # a fresh image file has holes where zeros go; anything else is zeroed
            for off, n in zero_runs + (damaged if kind == "block" or not created else []):
                if kind == "block":
                    zero_device(fd, off, n, target)
                else:
                    punch(fd, off, n, target)
            flushed = kind == "block" or opts.sync
            if flushed:
                # a disk is about to be booted or removed; an image file is flushed by the kernel within
                # seconds (like restic and borg, which never fsync), unless --sync asks to wait for it
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise write_error(exc, target) from None
            check_same(target, fd, kind)
            if work.verify:
                verified = _read_back(fd, target, repo, by_pack, work, zero_runs, window, flushed)
        finally:
            if journal is not None:  # an interrupted run makes what it recorded durable
                journal.close(flush=sys.exc_info()[1] is not None)
            os.close(fd)
            work.close()
    except TargetFull as exc:  # only a file this restore created; never a device or an existing file
        if journal is not None and created:
            journal.path.unlink(missing_ok=True)
        if created:
            raise remove_partial(target, exc) from None
        raise
    if journal is not None:
        journal.remove()
    for off, n in sorted(damaged):
        listener(Warning(f"damaged range written as zeros: bytes {off}..{off + n} ({n} bytes)"))
    listener(Finished("restore"))
    return RestoreResult(snapshot_id=snap.id, target=target, size=size, written_bytes=written,
                         zero_bytes=zero_bytes, duration_s=round(time.monotonic() - t0, 3), damaged=sorted(damaged),
                         reused_bytes=work.reused_bytes, seeded=work.seeded,
                         resumed_bytes=work.resumed_bytes, verified_bytes=verified)


def _read_back(fd: int, target: str, repo: Repository, by_pack: dict[str, list[Blob]], work: Work,
               zero_runs: list[tuple[int, int]], window: tuple[int, int], flushed: bool) -> int:
    """Check what this run wrote by reading it back: whole chunks by id, zeroed ranges for zeros.
    Bytes it did not write were checked by id before (`delta.scan`). TargetError when any differ.
    `flushed`: the target is on stable storage, so the cached pages are dropped and the disk is read;
    an image file without --sync is read as any reader would (from the page cache)."""
    items: list[tuple[int, int, bytes | None]] = [(off, n, None) for off, n in zero_runs]
    for b in [*work.copied.values(), *(b for blist in by_pack.values() for b in blist)]:
        items.extend((c[0], b.raw, b.cid) for t in b.targets if (c := clip(t, b.raw, window)) and c[1] == b.raw)
    verified, wrong = read_back(fd, target, items, repo.chunk_id, drop=flushed)
    if wrong:
        raise TargetError(f"{target} does not read back what was written: {len(wrong)} range(s), first at byte "
                          f"{wrong[0][0]}", hint="the disk may be failing; check it (smartctl) before using it")
    return verified
