"""How the process uses glibc's allocator, which decides much of its peak memory.

The pipeline frees hundreds of MB of short-lived chunk and sealed-blob buffers per GB from a
dozen threads. By default glibc gives each thread its own arena and keeps freed memory in it
until the top of the arena is free past a trim threshold that grows with the largest buffer
seen (up to 64 MiB); measured, that held 25-30 MB more than the data in flight.

`tune_allocator` (once, at start-up) shares one arena between the threads (the hot loops run in
native code without allocating, so they do not contend for it) and fixes the thresholds: blocks
under 16 MiB (every chunk, blob and restore read) come from the arena and are reused, and free
memory above 1 MiB at its top goes back to the system. `release_free_memory` (once per pack)
also returns free pages from the middle of the arena.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@lru_cache(maxsize=1)
def _libc():
    try:
        # the process's own symbols, libc's among them: find_library would run ldconfig (a cold
        # start-up paid 20-50 ms for it)
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc: nothing to tune
        return None


def tune_allocator() -> None:
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_THRESHOLD, 16 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 20)


def keep_freed(limit: int) -> None:
    """Let up to `limit` bytes of freed memory stay at the top of the heap. A restore allocates
    and frees the same few MB per read (ranges, decrypted and decompressed chunks); trimming at
    1 MiB gave them back and faulted them in again, 140,000 page faults (0.3 s of system time)
    per 2.9 GB restored. Its peak is set by the reads in flight either way."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_TRIM_THRESHOLD, limit)


def release_free_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
