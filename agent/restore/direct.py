"""Writing a restore's chunks past the page cache (O_DIRECT) once the page cache has become slow.

Why: a buffered write copies every byte into a page-cache page the kernel allocates for it. On the
bench host (a virtual machine whose free memory goes back to the hypervisor) a page that has not
been used lately costs a fault on the host the first time it is touched: once the few recently
freed pages were used up, a buffered write fell from 5.6 GB/s to 0.36 GB/s, all of it system time,
and a day3 restore spent its last second and a half there. A direct write sends the process's own
buffer (one reused, aligned slab) to the disk, 2 GB/s here, and leaves no dirty pages to write back.
Writing direct from the start was slower (a day0 restore 1.8 -> 2.7 s): the disk then has to take
every byte within the restore, where buffered writes let the kernel write them back afterwards. So
writes start buffered, the writer measures the CPU time they cost (`Pace`), and once a stretch of
`SAMPLE` bytes cost more than a direct write's `SLOW_RATE` would take, it writes direct from then on.
A write that sleeps in the kernel's dirty-page throttling costs no CPU and does not switch: the
disk is the limit then either way.

A direct write must start and end on block boundaries, and chunks do not: a run's whole blocks (and
pages) go direct, its ragged head and tail (under a block each) through the page cache. A block at the seam
of two runs is thus only ever written through the page cache, by both, and no block is written
both ways. Where the filesystem refuses O_DIRECT (tmpfs, some FUSE and network filesystems), every
write stays buffered.
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

from agent.restore.target import pwritev_all, write_error
from agent.source.device import DIRECT_ALIGN, open_direct

# a multiple of every logical block size (512 and 4096), and whole pages: a direct write must not
# share a page with a buffered one (64 KiB pages on some arm64 kernels), whose dirty copy would
# later be written back over it
ALIGN = max(DIRECT_ALIGN, mmap.PAGESIZE)
MIN_DIRECT = 64 << 10  # fewer whole blocks than this in a run: buffered (one copy either way, no wait for the disk)
SAMPLE = 32 << 20  # buffered bytes per measurement
SLOW_RATE = 1 << 30  # bytes per CPU second below which buffered writes cost more than the disk takes direct

Mode = Literal["auto", "always", "never"]


def aligned_part(at: int, n: int, align: int = ALIGN) -> tuple[int, int]:
    """[lo, hi): the whole blocks of the run [at, at + n); lo == hi when it holds none."""
    lo = -(-at // align) * align
    hi = max(lo, (at + n) // align * align)
    return lo, hi


def split(views: list[memoryview], at: int, lo: int, hi: int) -> tuple[list[memoryview], list[memoryview],
                                                                      list[memoryview]]:
    """The views of a contiguous run starting at `at`, cut at image offsets `lo` <= `hi`: (before
    lo, from lo to hi, from hi on); empty pieces are left out."""
    head: list[memoryview] = []
    mid: list[memoryview] = []
    tail: list[memoryview] = []
    pos = at
    for v in views:
        end = pos + len(v)
        for part, a, b in ((head, pos, min(end, lo)), (mid, max(pos, lo), min(end, hi)), (tail, max(pos, hi), end)):
            if a < b:
                part.append(v[a - pos:b - pos])
        pos = end
    return head, mid, tail


class Pace:
    """Whether buffered writes have become slow: CPU seconds per byte over stretches of `sample` bytes."""

    def __init__(self, sample: int = SAMPLE, slow_rate: float = SLOW_RATE) -> None:
        self._sample = sample
        self._slow_rate = slow_rate
        self._cpu = 0.0
        self._bytes = 0
        self.slow = False

    def observe(self, n: int, cpu: float) -> None:
        self._cpu += cpu
        self._bytes += n
        if self._bytes >= self._sample:
            self.slow = self.slow or self._cpu * self._slow_rate > self._bytes
            self._cpu, self._bytes = 0.0, 0


class DirectWriter:
    """Writes runs of contiguous views into `fd` (opened by `path`). `mode`: "auto" buffered until
    `Pace` says the page cache is slow, then whole blocks direct; "always" direct from the start;
    "never" buffered. One thread calls it at a time."""

    def __init__(self, fd: int, path: str, mode: Mode = "auto", pace: Pace | None = None,
                 buffered_lock: AbstractContextManager[object] | None = None) -> None:
        self._fd = fd
        self._path = path
        # held around each buffered write: writers in other processes (restore.procs) take turns
        # there, while direct writes of whole blocks, which do not hold the inode lock for the copy,
        # go to the disk side by side
        self._lock = buffered_lock or nullcontext()
        # the same open file again (its /proc link), checked to be the same
        self._direct = open_direct(f"/proc/self/fd/{fd}", os.fstat(fd), write=True) if mode != "never" else None
        self._pace = pace or Pace()
        self._pace.slow = self._pace.slow or mode == "always"
        self._slab: mmap.mmap | None = None
        self.direct_bytes = 0  # written past the page cache

    @property
    def direct(self) -> bool:
        """Whether writes now go direct."""
        return self._direct is not None and self._pace.slow

    def write(self, views: list[memoryview], at: int) -> None:
        n = sum(len(v) for v in views)
        lo, hi = aligned_part(at, n)
        if not self.direct or hi - lo < MIN_DIRECT:
            with self._lock:
                c0 = time.thread_time()
                pwritev_all(self._fd, views, at, self._path)
                self._pace.observe(n, time.thread_time() - c0)
            return
        head, mid, tail = split(views, at, lo, hi)
        slab = self._buffer(hi - lo)
        pos = 0
        for v in mid:
            slab[pos:pos + len(v)] = v
            pos += len(v)
        if not self._write_direct(memoryview(slab)[:hi - lo], lo):
            with self._lock:
                pwritev_all(self._fd, mid, lo, self._path)
        if head or tail:
            with self._lock:
                if head:
                    pwritev_all(self._fd, head, at, self._path)
                if tail:
                    pwritev_all(self._fd, tail, hi, self._path)

    def close(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None
        if self._slab is not None:
            self._slab.close()
            self._slab = None

    def _buffer(self, n: int) -> mmap.mmap:
        """The slab (an anonymous mapping: page-aligned), grown to hold `n` bytes."""
        if self._slab is None or len(self._slab) < n:
            if self._slab is not None:
                self._slab.close()
            self._slab = mmap.mmap(-1, max(n, 1 << 20))
        return self._slab

    def _write_direct(self, data: memoryview, at: int) -> bool:
        """Write block-aligned `data` at `at`. False, with nothing written, where the kernel refuses
        direct writes after all (EINVAL: an alignment this file needs beyond ALIGN); every write is
        buffered from then on."""
        assert self._direct is not None
        done = 0
        try:
            while done < len(data):
                k = os.pwrite(self._direct, data[done:], at + done)
                if k % ALIGN or k == 0:  # a short write that ends inside a block: the rest buffered
                    self.direct_bytes += k
                    with self._lock:
                        pwritev_all(self._fd, [data[done + k:]], at + done + k, self._path)
                    return True
                done += k
                self.direct_bytes += k
        except OSError as exc:
            if exc.errno == errno.EINVAL and done == 0:
                os.close(self._direct)
                self._direct = None
                return False
            raise write_error(exc, self._path) from None
        return True
