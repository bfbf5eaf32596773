"""Restore a snapshot to an image file (sparse) or a block device.

Plan and reads come from `restore.fetch` (chunk list -> pack ranges, coalesced; authenticate,
decompress, check id); here they run in parallel and each chunk is written with pwrite at every
image offset it appears. Zero runs become holes in files, and zeroed ranges on devices.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from agent.allocator import keep_freed
from agent.progress import Advanced, Finished, Listener, Started, Warning, ignore
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.restore.fetch import Blob, clip, plan_reads, read_group
from agent.restore.options import RestoreOptions, RestoreResult
from agent.restore.target import TargetFull, open_target, pwrite_all, remove_partial, write_error, zero_device


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
    zero_runs = plan.zero_runs

    size = window[1]
    fd, kind, created = open_target(target, size, opts.force, opts.disk_size)
    listener(Started("restore", size))
    damaged = list(plan.missing)
    written = 0

    def fetch(pack_id: str, group: list[Blob]) -> tuple[int, list[tuple[int, int]]]:
        bad: list[tuple[int, int]] = []
        done = 0
        for b, raw, _ in read_group(repo, pack_id, group, opts.ignore_errors):
            if raw is None:
                bad.extend(r for t in b.targets if (r := clip(t, b.raw, window)) is not None)
                continue
            for t in b.targets:
                at, n = clip(t, len(raw), window) or (0, 0)
                if n:  # a chunk across the window's edge is fetched whole and written in part
                    skip = at + window[0] - t
                    pwrite_all(fd, memoryview(raw)[skip:skip + n], at, target)
                    done += n
        return done, bad

    try:
        try:
            pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="restore")
            try:
                jobs = [pool.submit(fetch, p, g) for p, g in plan.groups()]
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
