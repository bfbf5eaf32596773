"""What a restore still has to write: the full plan (every chunk of the window, by pack) narrowed by
what an interrupted run already wrote (journal), what the target already holds (`--delta`) and what
local images can supply (`--seed`)."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from agent.errors import TargetError
from agent.progress import Advanced, Listener, Started, Warning
from agent.repo.chunklist import Extent
from agent.restore.delta import Scan, known, open_seed, preload, resync, scan, verify
from agent.restore.fetch import Blob, clip
from agent.restore.journal import covered
from agent.restore.options import RestoreOptions
from agent.restore.share import Sharer, can_share

_COPY_BATCH = 8 << 20  # image bytes per copy job
_PRELOAD = 256 << 20  # chunks that moved within a delta target, held in memory before they are overwritten


CopyItem = tuple[int, int, int, bytes, list[int]]  # source fd, source offset, length, id, target offsets


@dataclass
class Work:
    blobs: dict[bytes, Blob]  # to fetch
    zero_runs: list[tuple[int, int]]  # target ranges to make zero (holes of a fresh file need nothing)
    zero_bytes: int  # the window's zeros
    copies: list[list[CopyItem]] = field(default_factory=list)  # jobs copying chunks from local images
    copied: dict[bytes, Blob] = field(default_factory=dict)  # what copies replace, fetched if a copy fails
    verify: bool = False  # read back what was written (a delta or seeded restore)
    reused_bytes: int = 0
    seeded: list[tuple[str, int]] = field(default_factory=list)
    resumed_bytes: int = 0
    seed_fds: list[int] = field(default_factory=list)
    supplied: list[tuple[int, int]] = field(default_factory=list)  # target ranges seeds wrote while scanned
    supplied_blobs: dict[bytes, Blob] = field(default_factory=dict)  # the chunks written there
    preloaded: dict[bytes, bytes] = field(default_factory=dict)  # chunks that moved within the target
    shared_bytes: int = 0  # supplied by sharing a seed's blocks (reflinks), not written (agent.restore.share)

    def close(self) -> None:
        for sfd in self.seed_fds:
            os.close(sfd)
        self.seed_fds.clear()


def check_same(path: str, fd: int, kind: str) -> None:
    """The path still names the object being written: a removed image file (or its directory), or a
    detached disk, must not end in a restore reported as done."""
    here = os.fstat(fd)
    try:
        now = os.stat(path)
    except OSError:
        now = None
    if kind == "block":
        same = now is not None and stat.S_ISBLK(now.st_mode) and now.st_rdev == here.st_rdev
    else:
        same = now is not None and (now.st_dev, now.st_ino) == (here.st_dev, here.st_ino)
    if not same:
        raise TargetError(f"{path} disappeared during the restore (removed, replaced or detached)",
                          hint="restore again to a target that stays in place")


def narrow(chunk_id: Callable[[memoryview], bytes], cut: Callable[[memoryview], Iterable], fd: int, target: str,
           kind: str, fresh: bool,
           blobs: dict[bytes, Blob], zero_runs: list[tuple[int, int]], extents: list[Extent],
           window: tuple[int, int], done: list[tuple[int, int]], opts: RestoreOptions,
           listener: Listener, write: Callable[[memoryview, int], None], held: list[Extent] | None = None,
           seed_held: Callable[[str, int], list[Extent] | None] | None = None) -> Work:
    """The work left for this run. `fresh`: a file this run created (all holes). Chunks a seed holds
    in place are written (`write`) as the seed is scanned, or share its blocks after the scan where
    the filesystem can (agent.restore.share). `held`: the extents of the snapshot a
    delta target holds, by its stamp (agent.restore.stamp): compared instead of reading the target.
    `seed_held(path, fd)`: the same for a seed; used where its blocks can be shared, so that a
    stamped seed is not read at all."""
    zero_bytes = sum(n for _, n in zero_runs)
    work = Work(blobs, [] if fresh and kind == "file" else list(zero_runs), zero_bytes)
    size = window[1]
    if done:  # resume: units an interrupted run wrote
        work.resumed_bytes = sum(n for _, n in done)
        work.zero_runs = [] if kind == "file" else work.zero_runs
        _drop(blobs, lambda at, n: covered(done, at, n), window)
    scans: list[tuple[Scan, int]] = []
    if opts.delta and not fresh:
        elsewhere: dict[bytes, int] = {}
        if held is not None:
            found, elsewhere = known(held, extents, window)
        else:
            listener(Started("compare", size))
            found = scan(fd, target, size, extents, window, chunk_id, zeros=True,
                         progress=lambda n: listener(_advanced(n)))
        work.reused_bytes = found.matched_bytes
        work.zero_runs = _merge(found.not_zero)
        _drop(blobs, lambda at, n: at in found.matched, window)
        if held is not None:  # chunks the target holds elsewhere, by its stamp: checked by id when preloaded
            moved = {cid: at for cid, at in elsewhere.items() if cid in blobs}
            found.sources.update(moved)
        else:
            moved = resync(fd, target, found, cut, chunk_id, set(blobs))
        work.preloaded = preload(fd, moved, {cid: blobs[cid].raw for cid in moved}, chunk_id, _PRELOAD)
        for cid in moved.keys() - work.preloaded.keys():
            del found.sources[cid]  # over the budget: fetched
        scans.append((found, fd))
        work.verify = True
    direct: dict[int, int] = {}
    try:
        for seed in opts.seeds:
            sfd, ssize = open_seed(seed)
            work.seed_fds.append(sfd)
            sharer = Sharer(sfd, seed, fd, target, write) if kind == "file" and can_share(sfd, fd) else None
            seed_holds = seed_held(seed, sfd) if sharer is not None and seed_held is not None else None
            if sharer is not None and seed_holds is not None:  # stamped: what it holds is known, not read
                found, elsewhere = known(seed_holds, extents, window)
                found.path = seed
                taken = _in_place(blobs, window, found.matched, sharer)
                found.sources.update((cid, at) for cid, at in elsewhere.items() if cid in blobs)
            else:
                listener(Started(f"seed {seed}", min(ssize, size)))
                supply, taken = _supplier(blobs, window, write, sharer)
                found = scan(sfd, seed, ssize, extents, window, chunk_id, zeros=False,
                             progress=lambda n: listener(_advanced(n)), supply=supply)
            if sharer is not None:
                sharer.finish()
                work.shared_bytes += sharer.shared_bytes
            for cid, ats in taken.items():
                b = work.supplied_blobs[cid] = blobs.pop(cid)
                work.supplied.extend((at, b.raw) for at in ats)
                direct[sfd] = direct.get(sfd, 0) + b.raw * len(ats)
            if seed_holds is None:  # chunks that moved: a stamped seed's chunk list names them
                resync(sfd, seed, found, cut, chunk_id, set(blobs))
            scans.append((found, sfd))
            work.verify = True
        _plan_copies(work, scans, window, direct)
    except BaseException:
        work.close()
        raise
    for path, n in work.seeded:
        if n == 0:
            listener(Warning(f"seed {path} supplied nothing: it holds none of the chunks still needed (an image "
                             "of another disk?)"))
    return work


def _advanced(n: int) -> Advanced:
    return Advanced(n)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if out and off == out[-1][0] + out[-1][1]:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((off, n))
    return out


def _drop(blobs: dict[bytes, Blob], have: Callable[[int, int], bool], window: tuple[int, int]) -> None:
    """Remove the targets `have` says are already right; chunks with none left are not fetched."""
    for cid in list(blobs):
        b = blobs[cid]
        keep = []
        for t in b.targets:
            c = clip(t, b.raw, window)
            if c is None or not (c[1] == b.raw and have(*c)):
                keep.append(t)
        if keep:
            b.targets = keep
        else:
            del blobs[cid]


def _whole(b: Blob, window: tuple[int, int]) -> list[int] | None:
    """The target offsets of a chunk that lies wholly inside the window at each of its places, or None
    (a chunk across the window's edge is fetched: only whole chunks are checked by id)."""
    ats = [c[0] for t in b.targets if (c := clip(t, b.raw, window)) is not None and c[1] == b.raw]
    return ats if len(ats) == len(b.targets) else None


def _in_place(blobs: dict[bytes, Blob], window: tuple[int, int], matched: set[int], sharer: Sharer
              ) -> dict[bytes, list[int]]:
    """Chunks that a stamped seed holds at every place the target needs them, handed to `sharer`
    (id -> target offsets); a chunk also needed elsewhere is left to the copies, which read it."""
    taken: dict[bytes, list[int]] = {}
    for cid, b in blobs.items():
        ats = _whole(b, window)
        if ats and all(at in matched for at in ats):
            for at in ats:
                sharer.add(at, b.raw)
            taken[cid] = ats
    return taken


def _supplier(blobs: dict[bytes, Blob], window: tuple[int, int], write: Callable[[memoryview, int], None],
              sharer: Sharer | None = None) -> tuple[Callable[[bytes, memoryview, int], None], dict[bytes, list[int]]]:
    """A `scan` callback that writes each still-needed chunk once, at every place, from the bytes the
    scan has just matched by id; and what it wrote (id -> target offsets). Hashing threads call it.
    With a `sharer`, a place at the chunk's own offset in the seed is left to it instead."""
    wanted = {cid: ats for cid, b in blobs.items() if (ats := _whole(b, window))}
    taken: dict[bytes, list[int]] = {}
    lock = threading.Lock()

    def supply(cid: bytes, data: memoryview, seed_at: int) -> None:
        with lock:
            ats = wanted.pop(cid, None)
        if ats is None:
            return
        for at in ats:
            if sharer is not None and at == seed_at:
                sharer.add(at, len(data))
            else:
                write(data, at)
        with lock:
            taken[cid] = ats

    return supply, taken


def _plan_copies(work: Work, scans: list[tuple[Scan, int]], window: tuple[int, int], direct: dict[int, int]) -> None:
    """Chunks still to fetch that a scanned image holds (the target elsewhere, or a seed) are copied
    from there; a chunk across the window's edge is fetched (only whole chunks are checked by id)."""
    supplied = dict(direct)
    batch: list[CopyItem] = []
    batch_bytes = 0
    for cid in list(work.blobs):
        b = work.blobs[cid]
        ats = _whole(b, window)
        if ats is None:
            continue
        source = (-1, 0) if cid in work.preloaded else \
            next(((sfd, found.sources[cid]) for found, sfd in scans if cid in found.sources), None)
        if source is None:
            continue
        del work.blobs[cid]
        work.copied[cid] = b
        batch.append((source[0], source[1], b.raw, cid, ats))
        supplier = scans[0][1] if source[0] < 0 else source[0]  # preloaded: from the target
        supplied[supplier] = supplied.get(supplier, 0) + b.raw * len(ats)
        batch_bytes += b.raw * len(ats)
        if batch_bytes >= _COPY_BATCH:
            work.copies.append(batch)
            batch, batch_bytes = [], 0
    if batch:
        work.copies.append(batch)
    work.seeded = [(found.path, supplied.get(sfd, 0)) for found, sfd in scans if sfd in work.seed_fds]
    work.reused_bytes += sum(n for sfd, n in supplied.items() if sfd not in work.seed_fds)


def read_back(fd: int, target: str, items: list[tuple[int, int, bytes | None]],
              chunk_id: Callable[[memoryview], bytes], drop: bool) -> tuple[int, list[tuple[int, int]]]:
    """Check what this run wrote; with `drop` (a flushed target), first drop the cached pages so that
    the disk itself is read."""
    if drop:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
    return verify(fd, target, items, chunk_id)
