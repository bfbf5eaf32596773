"""Run producers (read + cut) in their own threads a few items ahead of the consumer.

After a page-cache drop the disk is the slowest stage; reading in the main thread left it idle
while the main thread waited on hashing and sealing, and left the CPU idle while it read. A
bounded queue keeps both busy and memory flat (`depth` items at most). `Merge` runs several
producers into one queue, so one consumer takes whichever stretch of the disk is ready.
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


class Merge(Generic[T]):
    """Producers in threads, one bounded queue: iterate (producer number, item) in arrival order,
    and (producer number, None) once that producer is done. A producer's exception is raised in
    the consumer."""

    def __init__(self, producers: list[Iterable[T]], depth: int = 2) -> None:
        self._q: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k, items), name="read", daemon=True)
                         for k, items in enumerate(producers)]
        for t in self._threads:
            t.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, k: int, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not self._put((k, item)):
                    return
            self._put((k, _END))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((k, exc))

    def __iter__(self) -> Iterator[tuple[int, T | None]]:
        live = len(self._threads)
        while live:
            k, item = self._q.get()
            if item is _END:
                live -= 1
                yield k, None
            elif isinstance(item, BaseException):
                raise item
            else:
                yield k, item

    def close(self) -> None:
        """Stop the producers (at their next item) and wait for them, so the source can be closed."""
        self._stop.set()
        while any(t.is_alive() for t in self._threads):
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass
        for t in self._threads:
            t.join()


class ReadAhead(Merge[T]):
    """One producer: iterate its items."""

    def __init__(self, items: Iterable[T], depth: int = 2) -> None:
        super().__init__([items], depth)

    def __iter__(self) -> Iterator[T]:  # type: ignore[override]
        for _, item in super().__iter__():
            if item is not None:
                yield item
