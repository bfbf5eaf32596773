"""Recycled read buffers for the backup pipeline.

Every block of a disk used to be read into a fresh allocation. glibc then either maps and unmaps
each one (a page fault per 4 KiB: about a second of system time per 2 GB) or, once its dynamic
mmap threshold has grown, keeps the freed blocks in per-thread arenas, so RSS climbed well past
the data in flight. A few buffers reused for the whole run avoid both.

A buffer goes back to the pool by itself when the last view of it dies (the chunks of a block
are views handed to hashing and sealing threads): a finalizer on the block's array, so no stage
has to count references. When every pooled buffer is still in use, `take` allocates a new one
rather than wait, so a view held longer than expected costs memory, never a deadlock.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np


class BufferPool:
    def __init__(self, size: int, keep: int) -> None:
        self.size, self.keep = size, keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.allocated = 0  # buffers ever allocated: the pool's peak, for tests and profiles

    def take(self) -> np.ndarray:
        """A buffer of `size` bytes (contents undefined). Hand it back with `lend`."""
        with self._lock:
            if self._free:
                return self._free.pop()
            self.allocated += 1
        return np.empty(self.size, dtype=np.uint8)

    def lend(self, backing: np.ndarray, start: int, end: int) -> np.ndarray:
        """A view of backing[start:end] whose death returns `backing` to the pool.

        Built on a memoryview so that numpy slices of it keep it alive (a slice of a plain
        ndarray view would point at `backing` directly and outlive the finalizer's target).
        """
        view = np.frombuffer(memoryview(backing)[start:end], dtype=np.uint8)
        weakref.finalize(view, self._give_back, backing)
        return view

    def _give_back(self, backing: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(backing)
