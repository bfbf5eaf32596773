"""Restore targets: an image file (sparse, fresh holes) or a block device (checked, zeroed where
the image has zeros), and the writes into them with errors a user can act on."""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from agent.errors import TargetError
from agent.source.device import mounts_of, size_of
from agent.source.partition_model import human_size


class TargetFull(TargetError):
    """The filesystem or quota holding the target ran out of space (ENOSPC, EDQUOT)."""


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_FALLOC_FL_ZERO_RANGE = 0x10


def probe_target(path: str) -> tuple[str, int]:
    """("block", its size), ("file", its size) or ("missing", 0): what a restore would write onto,
    to fit the disk to it before anything is written."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing", 0
    if stat.S_ISBLK(st.st_mode):
        fd = _open(path, os.O_RDONLY)
        try:
            return "block", size_of(fd, "block")
        finally:
            os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise TargetError(f"{path} is neither a block device nor a regular file")
    return "file", st.st_size


def holds_no_data(path: str) -> bool:
    """A file with holes only (`truncate -s 100G vm.img`, `qemu-img create -f raw`): a blank disk made
    for the restore, rather than an old image to replace."""
    fd = _open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 0, os.SEEK_DATA)
    except OSError as exc:
        return exc.errno == errno.ENXIO  # no data at or after offset 0
    finally:
        os.close(fd)
    return False


def open_target(path: str, size: int, force: bool, disk_size: int | None = None) -> tuple[int, str, bool]:
    """(descriptor, "block" or "file", whether this call created the file). `size` bytes are written;
    a file gets `disk_size` (a larger or smaller disk than the image), by default `size`."""
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
        have = size_of(fd, "block")
        if have < size:
            os.close(fd)
            raise TargetError(f"{path} holds {have} bytes, fewer than the image ({size}); choose a larger disk")
        if not force and any(os.pread(fd, 1 << 20, 0)):
            os.close(fd)
            raise TargetError(f"{path} already holds data", hint="add --force to overwrite it")
        return fd, "block", False
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise TargetError(f"{path} is neither a block device nor a regular file")
    if st is not None and st.st_size > 0 and not force:
        raise TargetError(f"{path} already exists and is not empty", hint="add --force to overwrite it")
    fd = _open(path, os.O_RDWR | os.O_CREAT | (0 if st is not None else os.O_EXCL), 0o600)
    size = disk_size or size
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
    return fd, "file", st is None


def open_existing(path: str, size: int, trim_to: int | None) -> tuple[int, str]:
    """An existing target, kept as it is (a delta restore, or resuming one): (descriptor, kind).
    Refused when mounted or smaller than `size`; with `trim_to`, a larger image file is cut to it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TargetError(f"{path} does not exist") from None
    if stat.S_ISBLK(st.st_mode):
        mounted = mounts_of(st.st_rdev)
        if mounted:
            raise TargetError(f"{path} (or a partition of it) is mounted at {', '.join(m[0] for m in mounted)}",
                              hint="unmount it first; restoring over a mounted disk would corrupt it")
        kind = "block"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        raise TargetError(f"{path} is neither a block device nor a regular file")
    fd = _open(path, os.O_RDWR)
    have = size_of(fd, kind)
    if have < size:
        os.close(fd)
        raise TargetError(f"{path} holds {have} bytes, fewer than the image ({size}); choose a larger "
                          f"{'disk' if kind == 'block' else 'target'}")
    if kind == "file" and trim_to is not None and have != trim_to:
        try:
            os.ftruncate(fd, trim_to)
        except OSError as exc:
            os.close(fd)
            raise TargetError(f"cannot size {path} to {size} bytes: {exc.strerror}") from None
    return fd, kind


def punch(fd: int, offset: int, length: int, path: str) -> None:
    """Make a file range read as zeros by deallocating it (a delta restore's zero runs); written
    zeros where the file system cannot punch holes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, ctypes.c_long(offset),
                      ctypes.c_long(length)) == 0:
        return
    step = 4 << 20
    zeros = bytes(step)
    for at in range(offset, offset + length, step):
        pwrite_all(fd, zeros[:min(step, offset + length - at)], at, path)


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
        raise TargetError(f"permission denied opening {path} for writing",
                          hint="run as root for block devices") from None
    except OSError as exc:
        raise TargetError(f"cannot open {path}: {exc.strerror}") from None


def write_error(exc: OSError, path: str) -> TargetError:
    """A failed write or flush of the target as the user-facing error."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return TargetFull(f"the disk holding {path} is full ({exc.strerror})",
                          hint="free space or restore elsewhere; sparse images need only the data size")
    return TargetError(f"writing {path} failed: {exc.strerror}")


def pwrite_all(fd: int, data, offset: int, path: str) -> None:
    pwritev_all(fd, [memoryview(data)], offset, path)


def pwritev_all(fd: int, views: list[memoryview], offset: int, path: str) -> None:
    """Write contiguous buffers from `offset` on with as few system calls as the kernel allows
    (a short write goes on from where it stopped)."""
    views = [v for v in views if len(v)]
    try:
        while views:
            n = os.pwritev(fd, views, offset)
            offset += n
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if n:
                views[0] = views[0][n:]
    except OSError as exc:
        raise write_error(exc, path) from None


def preallocate(fd: int, ranges: list[tuple[int, int]], path: str) -> None:
    """Allocate the [start, end) ranges a fresh image file will receive before writing them: a write
    into allocated blocks skips the filesystem's per-page delayed allocation (ext4: a fifth less CPU
    per byte written), and a disk without the room fails here, before anything is written. Holes
    stay holes. A filesystem without fallocate is simply written as before."""
    libc = ctypes.CDLL(None, use_errno=True)
    for start, end in ranges:
        if libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, ctypes.c_long(start), ctypes.c_long(end - start)) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT):
            need = sum(e - s for s, e in ranges)
            raise TargetFull(f"the disk holding {path} is too small for this restore: it needs {human_size(need)} "
                             f"for the image's data ({os.strerror(err)})",
                             hint="free space or restore elsewhere; sparse images need only the data size")
        return  # EOPNOTSUPP and the like: allocation happens as the writes arrive


def remove_partial(path: str, exc: TargetFull) -> TargetFull:
    """Delete an image file this restore created and could not finish for lack of space: a full-size
    partial image would only keep the disk full. The error then says so."""
    try:
        os.unlink(path)
    except OSError as err:
        return TargetFull(f"{exc}; the partial image {path} could not be removed ({err.strerror})", hint=exc.hint)
    return TargetFull(f"{exc}; removed the partial image {path}", hint=exc.hint)


def zero_device(fd: int, offset: int, length: int, path: str) -> None:
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
            pwrite_all(fd, zeros[:n], offset, path)
        offset += n
