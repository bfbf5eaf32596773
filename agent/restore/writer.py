"""One thread that writes a restore's fetched chunks into the target, so fetching workers never wait.

Why: writes into one file are serialized by the kernel (ext4 and XFS hold the inode lock for a
buffered write), and a worker that waited for its turn held back the decompression it could have
done meanwhile: a day3 restore's writes (a third of its CPU) ran one at a time while the other
workers queued behind them, leaving the second core idle a fifth of the fetch. Now a worker hands
its group's chunks to the writer and goes on to the next read; the writer writes them in order.
At most `LIMIT` bytes wait in the queue (they are the decompressed chunks, already held in
memory); a worker that would exceed it waits, which happens only when the disk or the page cache
is the bottleneck.

Consecutive writes of a batch that continue one another (a group's chunks usually lie one after
another in the image) go out as one vectored write (`runs`): a day3 restore made 15% fewer
context switches, each system call being one more hand-over of the interpreter lock between the
writer and the workers.

A journal must not record ranges still queued: `submit` returns a ticket, and `done(ticket)` says
when everything up to it is written (first in, first out). A failed write is raised by the next
`done`, `submit` or `drain`, in the thread that records progress.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

LIMIT = 8 << 20  # bytes of chunks waiting to be written, at most
BATCH = 1 << 20  # a worker hands over its chunks in batches of about this many bytes (4 MiB: more system time)
RUN_VIEWS = 64  # buffers in one vectored write, well under any system's IOV_MAX (1024 on Linux)

Write = Callable[[list[memoryview], int], None]  # contiguous buffers, written from the offset on


def runs(writes: list[tuple[memoryview, int]], max_views: int = RUN_VIEWS) -> list[tuple[list[memoryview], int]]:
    """(views, offset) per vectored write: consecutive writes that each start where the previous
    one ended, in their order, at most `max_views` at a time. Empty views are dropped."""
    out: list[tuple[list[memoryview], int]] = []
    end = -1
    for view, at in writes:
        if not len(view):
            continue
        if out and at == end and len(out[-1][0]) < max_views:
            out[-1][0].append(view)
        else:
            out.append(([view], at))
        end = at + len(view)
    return out


class Writer:
    """Writes (view, offset) batches on a thread of its own, in submission order: `write` receives
    each run of contiguous views (`runs`) and its offset."""

    def __init__(self, write: Write, limit: int = LIMIT) -> None:
        self._write = write
        self._limit = limit
        self._cond = threading.Condition()
        self._jobs: deque[tuple[list[tuple[memoryview, int]], int, int] | None] = deque()
        self._waiting = 0  # bytes queued and not yet written
        self._submitted = 0  # the last ticket handed out
        self._written = 0  # the last ticket whose writes are done
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="restore-writer", daemon=True)
        self._thread.start()

    def submit(self, writes: list[tuple[memoryview, int]]) -> int:
        """Queue writes of views over immutable bytes (they are read later); returns their ticket."""
        n = sum(len(v) for v, _ in writes)
        with self._cond:
            self._cond.wait_for(lambda: self._waiting == 0 or self._waiting + n <= self._limit
                                or self._error is not None)
            self._raise()
            self._waiting += n
            self._submitted += 1
            self._jobs.append((writes, n, self._submitted))
            self._cond.notify_all()
            return self._submitted

    def ticket(self) -> int:
        """The ticket of everything submitted so far."""
        return self._submitted

    def done(self, ticket: int) -> bool:
        """Whether every write up to `ticket` is done; a failed one raises here."""
        with self._cond:
            self._raise()
            return self._written >= ticket

    def drain(self) -> None:
        """Wait until everything submitted is written (or raise what failed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._written >= self._submitted or self._error is not None)
            self._raise()

    def close(self) -> None:
        """Stop the thread once it has written what is queued (after a failure: at once)."""
        with self._cond:
            self._jobs.append(None)
            self._cond.notify_all()
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                job = self._jobs.popleft()
            if job is None:
                return
            writes, n, ticket = job
            if self._error is None:
                try:
                    for views, at in runs(writes):
                        self._write(views, at)
                except BaseException as exc:  # noqa: BLE001 - raised again where progress is recorded
                    self._error = exc
            with self._cond:
                self._waiting -= n
                self._written = ticket
                self._cond.notify_all()
