"""A seed's blocks shared with the target (reflinks) instead of copied, where the filesystem can.

Why: on XFS and btrfs a file can share another file's blocks (FICLONERANGE, what `cp --reflink`
uses). A chunk that a seed holds at the offset the target needs it needs no copy at all: the
target shares the seed's blocks, which costs neither the write nor the space, and the shared
blocks are copied by the filesystem only when one of the files is written there later.

Only whole filesystem blocks can be shared, and chunk boundaries follow the content, so the
chunks a seed supplies in place are gathered into runs (neighbours join up: the block across
their boundary is right in the seed too), each run is shared from its first whole block to its
last, and its ragged ends are copied. Where sharing is refused (ext4, two filesystems, a
filesystem made without reflinks) the runs are copied, from the seed, as a scan would have.

The seed's bytes were checked by id while it was scanned; a seed written between the scan and
the sharing would hand over other bytes, so its size and times are compared before and after
and a change stops the restore.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import threading
from typing import Callable

from agent.errors import TargetError

_FICLONERANGE = 0x4020940D  # _IOW(0x94, 13, struct file_clone_range)
_REFLINK_FS = {0x58465342, 0x9123683E}  # XFS, btrfs (statfs f_type): the filesystems that can share
_REFUSED = {errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.ENOSYS, errno.EPERM, errno.ETXTBSY}
_COPY = 8 << 20  # bytes per read when a run is copied


def _fs_type(fd: int) -> int | None:
    """statfs f_type of the file `fd` has open (os.fstatvfs does not give it)."""
    import ctypes

    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fstatfs(fd, buf) != 0:
        return None
    return int(struct.unpack_from("l", buf.raw)[0])


def can_share(seed_fd: int, target_fd: int) -> bool:
    """Both regular files on one filesystem of a kind that shares blocks."""
    s, t = os.fstat(seed_fd), os.fstat(target_fd)
    return (stat.S_ISREG(s.st_mode) and stat.S_ISREG(t.st_mode) and s.st_dev == t.st_dev
            and _fs_type(target_fd) in _REFLINK_FS)


def _identity(fd: int) -> tuple[int, int, int, int]:
    st = os.fstat(fd)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class Sharer:
    """Collects (offset, length) ranges a seed supplies in place (thread-safe), then shares or
    copies them into the target in `finish`."""

    def __init__(self, seed_fd: int, seed: str, target_fd: int, target: str,
                 write: Callable[[memoryview, int], None]) -> None:
        self._seed_fd, self._seed, self._fd, self._target, self._write = seed_fd, seed, target_fd, target, write
        self._ranges: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._before = _identity(seed_fd)
        self._block = max(os.fstatvfs(target_fd).f_frsize, os.fstatvfs(seed_fd).f_frsize, 512)
        self.shared_bytes = 0  # shared with the seed, not written
        self.copied_bytes = 0

    def add(self, at: int, length: int) -> None:
        with self._lock:
            self._ranges.append((at, length))

    def runs(self) -> list[tuple[int, int]]:
        """The collected ranges as [start, end) runs, neighbours joined."""
        out: list[tuple[int, int]] = []
        for at, n in sorted(self._ranges):
            if out and at <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], at + n))
            else:
                out.append((at, at + n))
        return out

    def finish(self) -> None:
        """Share each run's whole blocks and copy the rest; TargetError when the seed changed."""
        sharing = True
        for start, end in self.runs():
            lo = -(-start // self._block) * self._block
            hi = end // self._block * self._block
            if sharing and hi > lo:
                sharing = self._clone(lo, hi - lo)
            if sharing and hi > lo:
                self.shared_bytes += hi - lo
                self._copy(start, lo)
                self._copy(hi, end)
            else:
                self._copy(start, end)
        if _identity(self._seed_fd) != self._before:
            raise TargetError(f"seed {self._seed} changed while it was read, so the chunks taken from it may be "
                              f"wrong: {self._target} is incomplete",
                              hint="restore again with a seed that nothing writes to (a copy, or a snapshot of it)")

    def _clone(self, at: int, length: int) -> bool:
        arg = struct.pack("qQQQ", self._seed_fd, at, length, at)
        try:
            fcntl.ioctl(self._fd, _FICLONERANGE, arg)
        except OSError as exc:
            if exc.errno in _REFUSED:  # nothing was shared: the filesystem cannot, copy instead
                return False
            raise TargetError(f"sharing blocks of seed {self._seed} with {self._target} failed: "
                              f"{exc.strerror}") from None
        return True

    def _copy(self, start: int, end: int) -> None:
        for at in range(start, end, _COPY):
            n = min(_COPY, end - at)
            try:
                data = os.pread(self._seed_fd, n, at)
            except OSError as exc:
                raise TargetError(f"reading seed {self._seed} failed: {exc.strerror}") from None
            if len(data) != n:
                raise TargetError(f"seed {self._seed} became shorter while it was read: {self._target} is "
                                  "incomplete", hint="restore again with a seed that nothing writes to")
            self._write(memoryview(data), at)
            self.copied_bytes += n
