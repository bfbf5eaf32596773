"""Bound what a backend may use at once: concurrent requests and bytes per second.

Providers throttle (or bill) past a number of connections, and a home uplink saturated by a
backup makes the rest of the household suffer; both limits are shared by every thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Iterator, Sequence

from backends.base import Backend, Capabilities, Leftover, LockPolicy, ObjectInfo, PutMode
from backends.middleware.wrapper import Middleware

#: listing entries fetched per connection slot; the caller consumes them without holding one
LIST_CHUNK = 1000
#: transfers are charged in slices this large so concurrent threads interleave fairly
SLICE = 64 << 10


class ConnectionLimitBackend(Middleware):
    """At most `max_connections` calls in flight against the inner backend."""

    def __init__(self, inner: Backend, max_connections: int) -> None:
        super().__init__(inner)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        inner = self.inner.capabilities
        return dataclasses.replace(inner, max_connections=min(inner.max_connections, self.max_connections))

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        with self._slots:
            self.inner.put(key, data, mode=mode, retain_until=retain_until)

    def put_file(self, key, file, size, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        with self._slots:
            self.inner.put_file(key, file, size, mode=mode, retain_until=retain_until)

    def get(self, key, *, offset=0, length=None) -> bytes:
        with self._slots:
            return self.inner.get(key, offset=offset, length=length)

    def head(self, key) -> ObjectInfo:
        with self._slots:
            return self.inner.head(key)

    def delete(self, key) -> None:
        with self._slots:
            self.inner.delete(key)

    def lock_policy(self) -> LockPolicy | None:
        with self._slots:
            return self.inner.lock_policy()

    def extend_retention(self, key, mode, until) -> None:
        with self._slots:
            self.inner.extend_retention(key, mode, until)

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        with self._slots:
            return self.inner.list_leftovers(older_than)

    def remove_leftover(self, leftover: Leftover) -> None:
        with self._slots:
            self.inner.remove_leftover(leftover)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Fetch up to LIST_CHUNK entries per slot, then release it while the caller consumes them.

        Holding a slot for a whole listing would let a slow consumer starve uploads.
        """
        it: Iterator[ObjectInfo] | None = iter(self.inner.list(prefix))
        try:
            while True:
                assert it is not None  # set to None only just before the loop returns or raises
                chunk: list[ObjectInfo] = []
                error: BaseException | None = None
                with self._slots:
                    try:
                        for info in it:
                            chunk.append(info)
                            if len(chunk) >= LIST_CHUNK:
                                break
                        else:
                            it = None
                    except Exception as exc:  # noqa: BLE001 - hand over what arrived before the failure first
                        error, it = exc, None
                yield from chunk
                if error is not None:
                    raise error
                if it is None:
                    return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()


class BandwidthLimiter:
    """A thread-safe token bucket: `consume(n)` blocks until `n` bytes fit under `rate` bytes/s.

    A caller may overdraw the bucket; the debt makes the next callers wait, so threads are
    served in the order they asked and the long-run rate is exact even for requests larger than
    `burst`. `rate=None` means unlimited. Changing `rate` applies from that moment; a thread
    already asleep finishes its current wait, which is short when transfers come in slices.
    """

    def __init__(self, rate: float | None, burst: int | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = self._check(rate)
        self._burst_arg = burst
        self._tokens = float(self.burst)
        self._last = clock()

    @staticmethod
    def _check(rate: float | None) -> float | None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive bytes/s, or None for unlimited")
        return None if rate is None else float(rate)

    @property
    def burst(self) -> int:
        """Bytes that may pass at once after a pause: given, or a tenth of a second (>= SLICE)."""
        if self._burst_arg is not None:
            return self._burst_arg
        return max(SLICE, int((self._rate or 0) / 10))

    @property
    def rate(self) -> float | None:
        return self._rate

    @rate.setter
    def rate(self, rate: float | None) -> None:
        rate = self._check(rate)
        with self._lock:
            self._refill(self._clock())  # bytes earned so far are earned at the old rate
            self._rate = rate
            if rate is None:
                self._tokens = float(self.burst)
            else:
                self._tokens = min(self._tokens, float(self.burst))

    def _refill(self, now: float) -> None:
        if self._rate is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self._rate)
        self._last = now

    def consume(self, n: int) -> None:
        """Take `n` bytes from the bucket, sleeping as long as the debt requires."""
        if n <= 0:
            return
        with self._lock:
            if self._rate is None:
                return
            self._refill(self._clock())
            self._tokens -= n
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


def _charge(limiter: BandwidthLimiter, n: int) -> None:
    for start in range(0, n, SLICE):
        limiter.consume(min(SLICE, n - start))


class BandwidthLimitBackend(Middleware):
    """Charges put sizes to `upload` and get sizes to `download` (either may be None).

    Uploads are charged before they start and downloads once their size is known, so single
    requests run at full speed while the average over many stays at the limit.
    """

    def __init__(self, inner: Backend, upload: BandwidthLimiter | None = None,
                 download: BandwidthLimiter | None = None) -> None:
        super().__init__(inner)
        self.upload = upload
        self.download = download

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        if self.upload is not None:
            _charge(self.upload, memoryview(data).nbytes)
        self.inner.put(key, data, mode=mode, retain_until=retain_until)

    def put_file(self, key, file, size, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        if self.upload is not None:
            _charge(self.upload, size)
        self.inner.put_file(key, file, size, mode=mode, retain_until=retain_until)

    def get(self, key, *, offset=0, length=None) -> bytes:
        data = self.inner.get(key, offset=offset, length=length)
        if self.download is not None:
            _charge(self.download, len(data))
        return data
