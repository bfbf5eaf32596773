"""Recycled read buffers for the backup pipeline, and the bound on how many exist.

Every block of a disk used to be read into a fresh allocation. glibc then either maps and unmaps
each one (a page fault per 4 KiB: about a second of system time per 2 GB) or, once its dynamic
mmap threshold has grown, keeps the freed blocks in per-thread arenas, so RSS climbed well past
the data in flight. A few buffers reused for the whole run avoid both.

A buffer goes back to the pool by itself when the last view of it dies (the chunks of a block
are views handed to hashing and sealing threads): a finalizer on the block's array, so no stage
has to count references. At most `limit` buffers exist: `take` waits for one to come back. That
wait is the pipeline's memory bound, and it cannot deadlock, because every stage downstream of the
reader finishes what it holds without needing a new buffer. `close` releases a waiting reader
(it then allocates) so a stopping run never hangs on it.

Buffers are anonymous `mmap`s: page-aligned, as O_DIRECT reads need (agent.source.device), and
handed back to the system whole when dropped. A lent view is a memoryview over a ctypes array made
on the buffer: unlike a memoryview, the ctypes array can carry the finalizer, and every slice of
the view keeps it alive.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
import weakref


class BufferPool:
    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        self._free: list[mmap.mmap] = []
        # re-entrant: a finalizer may run (and give a buffer back) in a thread already inside the pool
        self._cond = threading.Condition(threading.RLock())
        self._live = 0  # buffers allocated and not dropped
        self._closed = False
        self.allocated = 0  # buffers ever allocated, for tests and profiles

    def take(self) -> mmap.mmap:
        """A buffer of `size` bytes (contents undefined); waits while `limit` are in use."""
        with self._cond:
            while not self._free and self._live >= self.limit and not self._closed:
                self._cond.wait()
            if self._free:
                return self._free.pop()
            self._live += 1
            self.allocated += 1
        return mmap.mmap(-1, self.size)

    def lend(self, backing: mmap.mmap, start: int, end: int) -> memoryview:
        """A view of backing[start:end] (format 'B') whose death, with all its slices, returns
        `backing` to the pool."""
        owner = (ctypes.c_char * (end - start)).from_buffer(backing, start)
        weakref.finalize(owner, self.give_back, backing)
        return memoryview(owner).cast("B")

    def give_back(self, backing: mmap.mmap) -> None:
        """Return a buffer: called by a lent view's finalizer, or directly for one that was never lent."""
        with self._cond:
            if len(self._free) < self.limit:
                self._free.append(backing)
            else:  # allocated past the limit after close()
                self._live -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
