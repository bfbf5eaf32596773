"""Reading a local image in large spans (a delta restore's target, a seed): from the page cache
when it holds the span, else past it with O_DIRECT.

Why: a buffered read of a cold file first finds a page-cache page for every 4 KiB, often by
evicting another file's; on the bench host that capped a cold read at 0.5 GB/s, while O_DIRECT
read the same disk at 2.1 GB/s into a buffer that is reused. A span the cache already holds (an
image just restored, not yet written back) is read from memory instead: the kernel's cachestat
says how much of it is cached. A direct read of a range with dirty pages is still right: the
kernel writes them back first. Where O_DIRECT or cachestat is missing, reads are buffered or
direct respectively; a filesystem that refuses a direct read (EINVAL) gets buffered reads.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading

from agent.source.device import DIRECT_ALIGN, open_direct

_CACHESTAT = 451  # the syscall's number on every architecture (Linux 6.5+)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [("nr_cache", ctypes.c_uint64), ("nr_dirty", ctypes.c_uint64), ("nr_writeback", ctypes.c_uint64),
                ("nr_evicted", ctypes.c_uint64), ("nr_recently_evicted", ctypes.c_uint64)]


class SpanReader:
    """The file `fd` has open (also opened by `path` with O_DIRECT when it is still the same file).
    read(at, n) -> a view of the bytes at `at` (short at the end of the file), valid until the
    same thread's next read. Thread-safe: each thread reads into its own aligned buffer."""

    def __init__(self, fd: int, path: str, direct: bool = True) -> None:
        self._fd = fd
        self._dfd = open_direct(path, os.fstat(fd)) if direct else None
        self._direct_ok = self._dfd is not None
        self._cachestat_ok = self._dfd is not None
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._local = threading.local()
        self.direct_bytes = 0

    def close(self) -> None:
        if self._dfd is not None:
            os.close(self._dfd)
            self._dfd = None

    def __enter__(self) -> SpanReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, at: int, n: int) -> memoryview:
        lo = at - at % DIRECT_ALIGN
        hi = -(-(at + n) // DIRECT_ALIGN) * DIRECT_ALIGN
        buf = self._buffer(hi - lo)
        got = 0
        if self._direct_ok and not self._cached(lo, hi - lo):
            got = self._read_direct(buf, lo)
        while lo + got < hi:  # buffered: cached, no O_DIRECT, or what a direct read left
            k = os.preadv(self._fd, [buf[got:]], lo + got)
            if k <= 0:
                break
            got += k
        start = at - lo
        return buf[start:max(start, min(start + n, got))]

    def _read_direct(self, buf: memoryview, at: int) -> int:
        got = 0
        while got < len(buf):
            try:
                k = os.preadv(self._dfd, [buf[got:]], at + got)  # type: ignore[arg-type]
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct_ok = False  # this filesystem takes no direct reads: buffered from now on
                break
            if k <= 0:
                break
            got += k
            self.direct_bytes += k
            if k % DIRECT_ALIGN:  # the end of the file
                break
        return got

    def _cached(self, at: int, n: int) -> bool:
        """Whether the page cache holds most of [at, at + n) (False where the kernel cannot say)."""
        if not self._cachestat_ok:
            return False
        rng, st = _Range(at, n), _Stat()
        if self._libc.syscall(_CACHESTAT, self._fd, ctypes.byref(rng), ctypes.byref(st), 0) != 0:
            self._cachestat_ok = False  # ENOSYS before Linux 6.5
            return False
        return st.nr_cache * mmap.PAGESIZE >= n // 2

    def _buffer(self, n: int) -> memoryview:
        buf: memoryview | None = getattr(self._local, "buf", None)
        if buf is None or len(buf) < n:  # anonymous memory is page-aligned
            buf = self._local.buf = memoryview(mmap.mmap(-1, max(n, 1 << 20)))
        return buf[:n]
