"""How many ranged reads a restore keeps in flight.

From a local disk three are enough: two cores decompress while one read waits. Over a network each
read also waits a round trip, during which its worker uses no CPU; with a fixed three, a 150 ms round
trip left the cores idle most of the time. So the window follows what each read costs: a read's
wall time over the CPU time it used says how many reads it takes to keep every core busy (Little's
law), and that many are kept in flight, never more than the backend's connection limit or what the
memory budget holds (each read holds its range, up to 16 MiB from object storage, until it is written).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass

LOCAL = 3  # a local repository: measured best (docs/benchmarks.md); more only held memory
QUEUED = 2  # jobs queued beyond a fixed window's workers (they hold no memory until they run)
MEMORY = 96 << 20  # bytes of ranges in flight at most: a 150 ms round trip at 600 MB/s (restic 0.18 holds more)
_SMOOTH = 0.2  # weight of the newest read in the running averages


@dataclass
class Window:
    """The number of reads to keep in flight, adjusted after every read."""

    size: int
    limit: int
    cores: int
    fixed: bool = False
    wall: float = 0.0  # running averages per read, seconds
    cpu: float = 0.0
    peak: int = 0  # the largest window used, for the result

    @classmethod
    def for_backend(cls, max_connections: int, range_bytes: int, fixed: int = 0) -> Window:
        """A fixed window (`fixed` > 0, or a local repository), else an adaptive one starting at LOCAL."""
        cores = os.cpu_count() or 2
        if fixed or max_connections <= 2:
            size = fixed or LOCAL
            return cls(size, size, cores, fixed=True, peak=size)
        limit = max(LOCAL, min(max_connections, MEMORY // max(range_bytes, 1)))
        return cls(LOCAL, limit, cores, peak=LOCAL)

    def observe(self, wall: float, cpu: float) -> None:
        """One read took `wall` seconds, `cpu` of them on a core (fetching, decrypting, decompressing)."""
        if self.fixed:
            return
        first = self.wall == 0.0
        self.wall = wall if first else (1 - _SMOOTH) * self.wall + _SMOOTH * wall
        self.cpu = cpu if first else (1 - _SMOOTH) * self.cpu + _SMOOTH * cpu
        want = math.ceil(self.cores * self.wall / max(self.cpu, 1e-4))
        self.size = max(LOCAL, min(self.limit, want))
        self.peak = max(self.peak, self.size)


def as_done(pool: Executor, fn: Callable[..., object], jobs: Sequence[tuple],
            size: Callable[[], int]) -> Iterator[Future]:
    """Futures of fn(*job) as they finish, with size() of them running at once (the window may
    change between jobs): a read that finishes early makes room at once, instead of waiting
    behind an earlier, slower one. Unstarted jobs are cancelled when the caller stops early."""
    running: set[Future] = set()
    todo = iter(jobs)
    try:
        while True:
            while len(running) < max(1, size()):
                job = next(todo, None)
                if job is None:
                    break
                running.add(pool.submit(fn, *job))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            yield from done
    finally:
        for fut in running:
            fut.cancel()
