"""Restore a snapshot to an image file (sparse) or a block device.

Plan and reads come from `restore.fetch` (chunk list -> pack ranges, coalesced; authenticate,
decompress, check id); here they run in parallel and each chunk is written at every image offset
it appears, by `restore.writer` (chunks that follow one another in one vectored write). Zero runs
become holes in files, and zeroed ranges on devices. Before that, `restore.plan` narrows the plan
to what is left (resume, --delta, --seed), and `restore.journal` records each finished job so that
an interrupted restore resumes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor

from agent.allocator import keep_freed
from agent.errors import AgentError, TargetError
from agent.progress import Advanced, Finished, Listener, Started, Warning, ignore
from agent.repo.chunklist import Extent
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.restore.delta import copy_chunks
from agent.restore.direct import DirectWriter
from agent.restore.fetch import (
    MAX_READ,
    REMOTE_READ,
    Blob,
    Opened,
    clip,
    plan_reads,
    ranges,
    read_group,
    read_range,
)
from agent.restore.journal import Header, prepare
from agent.restore.options import RestoreOptions, RestoreResult
from agent.restore.plan import Work, check_same, narrow, read_back
from agent.restore.procs import WORKERS, Workers, cores, usable
from agent.restore.stamp import Stamp, clear_stamp, read_stamp, write_stamp
from agent.restore.target import TargetFull, preallocate, punch, remove_partial, write_error, zero_device
from agent.restore.window import LOCAL, QUEUED, Window, as_done
from agent.restore.writer import BATCH, Writer
from agent.source.skipmap import merged, subtract


def run_restore(repo: Repository, snap: Snapshot, target: str, opts: RestoreOptions | None = None,
                listener: Listener = ignore) -> RestoreResult:
    opts = opts or RestoreOptions()
    t0 = time.monotonic()
    keep_freed(32 << 20)
    with repo.lock(exclusive=False, command="restore", wait=opts.lock_wait):
        return _restore(repo, snap, target, opts, listener, t0)


def _restore(repo: Repository, snap: Snapshot, target: str, opts: RestoreOptions, listener: Listener,
             t0: float) -> RestoreResult:
    window = opts.window or (0, snap.size)
    plan = plan_reads(repo, snap, opts.ignore_errors, window, listener)

    size = window[1]
    stamp, held = _held(repo, plan.index, target, window) if opts.delta and not opts.compare_all else (None, None)
    prep = prepare(target, Header(snap.id, window, size), opts.force, opts.delta, opts.journal_dir,
                   opts.journal_interval, opts.disk_size, opts.resumable)
    fd, kind, created, journal = prep.fd, prep.kind, prep.created, prep.journal
    if stamp is not None and not stamp.still_describes(fd):  # replaced or written since it was read, or cut
        stamp, held = None, None
    if kind == "file" and not created:
        clear_stamp(fd)  # what it holds is about to change
    # a buffered write holds the file's inode lock in the kernel (ext4, XFS): writers wait here, asleep,
    # instead of spinning on the lock there
    write_lock = threading.Lock()
    direct = DirectWriter(fd, target, opts.direct)

    def write(views: list[memoryview], at: int) -> None:
        with write_lock:
            direct.write(views, at)

    try:
        if created and kind == "file":  # a fresh file receives every chunk of the plan
            preallocate(fd, _data_ranges(plan.by_pack, window), target)
        cdc = repo.new_chunker()
        blobs = {b.cid: b for blist in plan.by_pack.values() for b in blist}
        work = narrow(repo.chunk_id, cdc.cut_buf, fd, target, kind, created, blobs, plan.zero_runs, plan.extents,
                      window, prep.done, opts, listener, lambda data, at: write([data], at), held=held,
                      seed_held=lambda path, sfd: _seed_held(repo, plan.index, path, sfd, window))
    except BaseException as exc:  # a seed that cannot be read, Ctrl-C while comparing, no room for the image
        direct.close()
        if journal is not None:
            journal.close()
            if created:
                journal.path.unlink(missing_ok=True)
        os.close(fd)
        if created:
            if isinstance(exc, TargetFull):
                raise remove_partial(target, exc) from None
            os.unlink(target)
        raise
    if snap.not_backed_up:
        work.zero_runs = _leave_out(work.zero_runs, snap, window, kind, target, listener)
    zero_runs, zero_bytes, verified = work.zero_runs, work.zero_bytes, 0
    by_pack: dict[str, list[Blob]] = defaultdict(list)
    for b in work.blobs.values():
        by_pack[b.pack].append(b)
    listener(Started("restore", size))
    damaged = list(plan.missing)
    written = 0

    remote = repo.capabilities.max_connections > 2  # object storage or a network share, not a local disk
    max_read = REMOTE_READ if remote else MAX_READ
    reads = Window.for_backend(repo.capabilities.max_connections, max_read, opts.workers)
    writer = Writer(write)  # fetched chunks are written on a thread of their own (restore.writer)

    def fetch(pack_id: str, group: list[Blob]) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]], int]:
        t0, c0 = time.monotonic(), time.thread_time()
        try:
            return _fetch(pack_id, group)
        finally:
            reads.observe(time.monotonic() - t0, time.thread_time() - c0)

    def _fetch(pack_id: str, group: list[Blob]) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]], int]:
        opened = Opened(window)
        ticket = writer.ticket()
        for b, raw, _ in read_group(repo, pack_id, group, opts.ignore_errors):
            if opened.batched >= BATCH:  # handed over as they come: a group's chunks are ~10 MiB
                ticket = writer.submit(opened.take())
            opened.add(b, raw)
        return opened.written, opened.bad, opened.done, writer.submit(opened.take()) if opened.writes else ticket

    def read(job: int) -> tuple[int, bytes | None, str]:
        """A group's range, for a worker process (agent.restore.procs)."""
        pack_id, group = groups[job]
        t0, c0 = time.monotonic(), time.thread_time()
        try:
            return (job, *read_range(repo, pack_id, group, opts.ignore_errors))
        finally:
            reads.observe(time.monotonic() - t0, time.thread_time() - c0)

    def copy(items: list) -> tuple[int, list[tuple[int, int]], list[bytes], int]:
        writes: list[tuple[memoryview, int]] = []
        done, stale, _ = copy_chunks(items, repo.chunk_id, lambda view, at: writes.append((view, at)), work.preloaded)
        return sum(n for _, n in done), done, stale, writer.submit(writes) if writes else writer.ticket()

    groups: list[tuple[str, list[Blob]]] = []
    worker_direct = processes = 0
    unsettled: deque[tuple[int, list[tuple[int, int]]]] = deque()  # (ticket, ranges) maybe still queued

    def record(done: list[tuple[int, int]], ticket: int) -> None:
        """Journal ranges once the writer has written them (and raise a write that failed)."""
        unsettled.append((ticket, done))
        if journal is not None and journal.error is not None:
            raise write_error(journal.error, target)
        while unsettled and writer.done(unsettled[0][0]):
            ranges_done = unsettled.popleft()[1]
            if journal is not None:
                journal.written(ranges_done)

    def progressed(n: int, bad: list[tuple[int, int]], done: list[tuple[int, int]], ticket: int) -> None:
        """One group fetched: count it, journal it once written (`ticket`), report progress."""
        nonlocal written
        written += n
        damaged.extend(bad)
        record(done, ticket)
        check_same(target, fd, kind)
        listener(Advanced(written))

    try:
        try:
            if work.supplied:  # written by the seeds while they were scanned
                written = sum(n for _, n in work.supplied)
                record(work.supplied, 0)  # written already
                listener(Advanced(written))
            # a fixed window also queues jobs beyond its workers: a worker that finishes starts the next
            # read at once instead of idling until the main thread gets the interpreter lock to submit it
            # (a queued job holds no memory until it runs)
            ahead = QUEUED if reads.fixed else 0
            pool = ThreadPoolExecutor(reads.limit, thread_name_prefix="restore")
            try:
                for copied in as_done(pool, copy, [(items,) for items in work.copies], lambda: LOCAL):
                    n, done, stale, ticket = copied.result()
                    written += n
                    record(done, ticket)
                    listener(Advanced(written))
                    for cid in stale:  # the seed changed since it was scanned: fetch instead
                        b = work.copied.pop(cid)
                        by_pack[b.pack].append(b)
                groups = [(p, g) for p, blist in by_pack.items() for g in ranges(blist, max_read)]
                if _in_processes(opts, remote, groups):
                    slot = max(g[-1].offset + g[-1].length - g[0].offset for _, g in groups)
                    with Workers(repo, groups, fd, target, window, opts.ignore_errors, opts.direct, slot,
                                 min(WORKERS, cores())) as workers:
                        read_ranges = (fut.result() for fut in as_done(pool, read, [(j,) for j in range(len(groups))],
                                                                       lambda: reads.size + ahead))
                        for done in workers.feed(read_ranges):
                            progressed(done.written, done.bad, done.done, 0)  # written already
                        worker_direct, processes = sum(workers.direct_bytes.values()), workers.count
                else:
                    for fut in as_done(pool, fetch, groups, lambda: reads.size + ahead):
                        progressed(*fut.result())
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            writer.drain()  # before zeroing, flushing and reading back
            record([], writer.ticket())
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
            if kind == "file" and not damaged:  # after the last write: a later one changes its mtime
                write_stamp(fd, repo.id, snap.id, window, repo.chunk_id)
        finally:
            writer.close()
            direct.close()
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
                         reused_bytes=work.reused_bytes, seeded=work.seeded, resumed_bytes=work.resumed_bytes,
                         verified_bytes=verified, reads_in_flight=reads.peak,
                         held_snapshot=stamp.snapshot if stamp is not None else None,
                         shared_bytes=work.shared_bytes, direct_bytes=direct.direct_bytes + worker_direct,
                         processes=processes)


def _in_processes(opts: RestoreOptions, remote: bool, groups: list[tuple[str, list[Blob]]]) -> bool:
    """Whether to open and write chunks in worker processes (agent.restore.procs): from a local
    repository, where the cores are the limit, with more groups than workers to share them."""
    if opts.processes == "never" or not groups or not usable():
        return False
    return opts.processes == "always" or (not remote and len(groups) > WORKERS)


def _held(repo: Repository, index: ChunkIndex | None, target: str,
          window: tuple[int, int]) -> tuple[Stamp | None, list[Extent] | None]:
    """A delta target's stamp (agent.restore.stamp) and the extents of the snapshot it names;
    (None, None) without a valid stamp of this window, or when that snapshot is gone or its chunk
    list cannot be read (the target is then read instead)."""
    stamp = read_stamp(target, repo.id, repo.chunk_id)
    if stamp is None or stamp.window != window or index is None:
        return None, None
    old = next((s for s in repo.list_snapshots([]) if s.id == stamp.snapshot), None)
    if old is None:
        return None, None
    try:
        return stamp, list(repo.snapshot_extents(index, old))
    except AgentError:
        return None, None


def _seed_held(repo: Repository, index: ChunkIndex | None, path: str, sfd: int,
               window: tuple[int, int]) -> list[Extent] | None:
    """The extents a seed holds by its stamp, when the stamp still describes the open seed."""
    stamp, extents = _held(repo, index, path, window)
    return extents if stamp is not None and stamp.still_describes(sfd) else None


def _data_ranges(by_pack: dict[str, list[Blob]], window: tuple[int, int]) -> list[tuple[int, int]]:
    """The [start, end) ranges of the target that the plan's chunks are written to."""
    return merged((c[0], c[0] + c[1]) for blist in by_pack.values() for b in blist for t in b.targets
                  if (c := clip(t, b.raw, window)) is not None)


def _leave_out(zero_runs: list[tuple[int, int]], snap: Snapshot, window: tuple[int, int], kind: str, target: str,
               listener: Listener) -> list[tuple[int, int]]:
    """A partial snapshot (`backup --partitions`): the partitions it left out are left alone on a
    device, whose other partitions may be in use, and are zeros in a file."""
    lo, hi = window
    out = [(max(a, lo) - lo, min(b, hi) - lo) for a, b in snap.not_backed_up if a < hi and b > lo]
    if not out:
        return zero_runs
    kept = [str(p.get("number")) for p in (snap.reading or {}).get("partitions", []) if p.get("read") != "skipped"]
    left = [str(p.get("number")) for p in (snap.reading or {}).get("partitions", []) if p.get("read") == "skipped"]
    if kind != "block":
        listener(Warning(f"snapshot {snap.id[:8]} holds partitions {', '.join(kept)} only: partitions "
                         f"{', '.join(left)} read as zeros in {target}"))
        return zero_runs
    listener(Warning(f"snapshot {snap.id[:8]} holds partitions {', '.join(kept)} only: partitions {', '.join(left)} "
                     f"of {target} were left untouched"))
    kept_runs = subtract([(off, off + n) for off, n in zero_runs], merged(out))
    return [(a, b - a) for a, b in kept_runs]


def _read_back(fd: int, target: str, repo: Repository, by_pack: dict[str, list[Blob]], work: Work,
               zero_runs: list[tuple[int, int]], window: tuple[int, int], flushed: bool) -> int:
    """Check what this run wrote by reading it back: whole chunks by id, zeroed ranges for zeros.
    Bytes it did not write were checked by id before (`delta.scan`). TargetError when any differ.
    `flushed`: the target is on stable storage, so the cached pages are dropped and the disk itself
    is read. An image file without --sync would be read from the page cache, the very memory its
    chunks were written from just after being checked by id: only its zeroed ranges are read back."""
    items: list[tuple[int, int, bytes | None]] = [(off, n, None) for off, n in zero_runs]
    written = [*work.copied.values(), *work.supplied_blobs.values(), *(b for blist in by_pack.values() for b in blist)]
    for b in written if flushed else []:
        items.extend((c[0], b.raw, b.cid) for t in b.targets if (c := clip(t, b.raw, window)) and c[1] == b.raw)
    verified, wrong = read_back(fd, target, items, repo.chunk_id, drop=flushed)
    if wrong:
        raise TargetError(f"{target} does not read back what was written: {len(wrong)} range(s), first at byte "
                          f"{wrong[0][0]}", hint="the disk may be failing; check it (smartctl) before using it")
    return verified
