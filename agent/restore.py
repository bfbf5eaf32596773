"""Restore a snapshot to an image file (sparse) or a block device.

Plan: chunk list -> (pack, offset) per chunk -> grouped by pack and coalesced into large ranged
reads -> parallel download, authenticate, decompress, check id -> pwrite at every image offset
that chunk appears. Zero runs become holes in files, and zeroed ranges on devices.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.errors import AgentError, CorruptObject, TargetError
from agent.memory import keep_freed
from agent.progress import Advanced, Finished, Listener, Started, Warning, ignore
from agent.repo.chunklist import DATA
from agent.repo.envelope import BlobType
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.snapshot_data import snapshot_extents
from agent.source.device import _size_of, mounts_of

_GAP = 256 << 10  # read across gaps smaller than this rather than issue another request
_MAX_READ = 4 << 20  # per request; three in flight bound a restore's memory (8 MiB x 4 held 30 MB more, no faster)
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_FALLOC_FL_ZERO_RANGE = 0x10


@dataclass
class RestoreOptions:
    force: bool = False
    ignore_errors: bool = False
    workers: int = 3  # ranged reads in flight: enough to keep two cores decompressing while one waits
    lock_wait: float = 1800.0
    sync: bool = False  # fsync an image file at the end; block devices are always flushed


@dataclass
class RestoreResult:
    snapshot_id: str
    target: str
    size: int
    written_bytes: int
    zero_bytes: int
    duration_s: float
    damaged: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Blob:
    cid: bytes
    pack: str
    offset: int  # in pack
    length: int
    raw: int
    targets: list[int]  # image offsets


def _open_target(path: str, size: int, force: bool) -> tuple[int, str]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISBLK(st.st_mode):
        mounted = mounts_of(st.st_rdev)
        if mounted:
            raise TargetError(f"{path} (or a partition of it) is mounted at {', '.join(m[0] for m in mounted)}",
                              hint="unmount it first; restoring over a mounted disk would corrupt it")
        fd = _open(path, os.O_RDWR)
        have = _size_of(fd, "block")
        if have < size:
            os.close(fd)
            raise TargetError(f"{path} holds {have} bytes, fewer than the image ({size}); choose a larger disk")
        if not force and any(os.pread(fd, 1 << 20, 0)):
            os.close(fd)
            raise TargetError(f"{path} already holds data", hint="add --force to overwrite it")
        return fd, "block"
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise TargetError(f"{path} is neither a block device nor a regular file")
    if st is not None and st.st_size > 0 and not force:
        raise TargetError(f"{path} already exists and is not empty", hint="add --force to overwrite it")
    fd = _open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Fresh holes everywhere, without truncating to zero: ext4 flushes a file truncated to zero
        # and rewritten when it is closed (auto_da_alloc), which cost 2.5 s per 2.8 GB restored.
        os.ftruncate(fd, size)
        if st is not None and st.st_size and not _punch(fd, size):
            os.ftruncate(fd, 0)
            os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        raise TargetError(f"cannot size {path} to {size} bytes: {exc.strerror}") from None
    return fd, "file"


def _punch(fd: int, size: int) -> bool:
    """Deallocate a whole file (--force over an old image); False where the file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(size)) == 0


def _open(path: str, flags: int, mode: int = 0o600) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        raise TargetError(f"{path}: the directory does not exist") from None
    except PermissionError:
        raise TargetError(f"permission denied opening {path} for writing", hint="run as root for block devices") from None
    except OSError as exc:
        raise TargetError(f"cannot open {path}: {exc.strerror}") from None


def _pwrite_all(fd: int, data, offset: int, path: str) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TargetError(f"the disk holding {path} is full",
                              hint="free space or restore elsewhere; sparse images need only the data size") from None
        raise TargetError(f"writing {path} failed: {exc.strerror}") from None


def _zero_device(fd: int, offset: int, length: int, path: str) -> None:
    """Zero a device range: offloaded ZERO_RANGE when the kernel offers it, else write only non-zero blocks."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, _FALLOC_FL_ZERO_RANGE | _FALLOC_FL_KEEP_SIZE, ctypes.c_long(offset),
                      ctypes.c_long(length)) == 0:
        return
    step = 4 << 20
    zeros = bytes(step)
    end = offset + length
    while offset < end:
        n = min(step, end - offset)
        if any(os.pread(fd, n, offset)):
            _pwrite_all(fd, zeros[:n], offset, path)
        offset += n


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


def _restore(repo: Repository, snap: Snapshot, target: str, opts: RestoreOptions, listener: Listener,
             t0: float) -> RestoreResult:
    index = repo.load_index()
    blobs: dict[bytes, _Blob] = {}
    zero_runs: list[tuple[int, int]] = []
    missing: list[tuple[int, int]] = []
    for ext in snapshot_extents(repo, index, snap):
        if ext.kind != DATA:
            zero_runs.append((ext.offset, ext.length))
            continue
        b = blobs.get(ext.id)
        if b is None:
            loc = index.get(ext.id)
            if loc is None:
                if not opts.ignore_errors:
                    raise CorruptObject(f"chunk {ext.id.hex()[:16]} at image offset {ext.offset} is missing from "
                                        "the repository")
                missing.append((ext.offset, ext.length))
                continue
            b = blobs[ext.id] = _Blob(ext.id, loc.pack_id, loc.offset, loc.length, loc.raw_length, [])
        b.targets.append(ext.offset)
    by_pack: dict[str, list[_Blob]] = defaultdict(list)
    for b in blobs.values():
        by_pack[b.pack].append(b)

    fd, kind = _open_target(target, snap.size, opts.force)
    listener(Started("restore", snap.size))
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
                bad.extend((t, b.raw) for t in b.targets)
                continue
            for t in b.targets:
                _pwrite_all(fd, raw, t, target)
                done += len(raw)
        return done, bad

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
                _zero_device(fd, off, n, target)
        if kind == "block" or opts.sync:
            # a disk is about to be booted or removed; an image file is flushed by the kernel within
            # seconds (like restic and borg, which never fsync), unless --sync asks to wait for it
            os.fsync(fd)
    finally:
        os.close(fd)
    for off, n in sorted(damaged):
        listener(Warning(f"damaged range written as zeros: bytes {off}..{off + n} ({n} bytes)"))
    listener(Finished("restore"))
    return RestoreResult(snap.id, target, snap.size, written, zero_bytes, round(time.monotonic() - t0, 3),
                         sorted(damaged))
