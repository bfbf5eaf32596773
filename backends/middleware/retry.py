"""Retry transient storage failures with capped exponential backoff, full jitter and a deadline.

This is the only place in the project that retries (design.md section 3), and it retries only
`TransientError`: every other error (NotFound, AuthError, QuotaExceeded, AlreadyExists...) would
fail the same way again, so retrying it only delays the report.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, Iterator, Sequence, TypeVar

from backends.base import Backend, Leftover, LockPolicy, ObjectInfo, PutMode, read_spool
from backends.errors import AlreadyExists, NotFound, TransientError
from backends.middleware.wrapper import Middleware

T = TypeVar("T")


class RetryBackend(Middleware):
    """Retries `TransientError` up to `max_attempts` calls within `deadline` seconds per operation.

    The wait before retry n is uniform in [0, min(max_delay, base_delay * 2**(n-1))] ("full
    jitter", so many clients throttled together do not retry in lockstep), raised to the
    server's `retry_after` when it gave one. A wait that would end past the deadline ends the
    operation instead, re-raising the last error with how many attempts it took over how long.
    """

    def __init__(self, inner: Backend, *, max_attempts: int = 8, base_delay: float = 0.5,
                 max_delay: float = 60.0, deadline: float = 15 * 60,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(inner)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.deadline = deadline
        self._sleep = sleep
        self._clock = clock
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()  # random.Random and the counter are shared by threads
        self._retries = 0

    @property
    def retries(self) -> int:
        """Retries made so far (attempts beyond the first), for statistics."""
        with self._lock:
            return self._retries

    # -- the retry decision -------------------------------------------------------------

    def _wait_or_raise(self, op: str, key: str, exc: TransientError, attempt: int, started: float) -> float:
        """The delay before the next attempt, or re-raise `exc` when attempts or time ran out."""
        elapsed = self._clock() - started
        remaining = self.deadline - elapsed
        with self._lock:
            jitter = self._rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        wait = min(jitter, max(remaining, 0.0))
        if exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        if attempt >= self.max_attempts or remaining <= 0 or wait > remaining:
            raise TransientError(
                f"{op} {key!r}: gave up after {attempt} attempt{'s' if attempt > 1 else ''} "
                f"over {elapsed:.1f}s: {exc}",
                retry_after=exc.retry_after,
            ) from exc
        with self._lock:
            self._retries += 1
        self._log.warning("%s %r: attempt %d/%d failed (%s); retrying in %.2fs",
                          op, key, attempt, self.max_attempts, exc, wait)
        return wait

    def _call(self, op: str, key: str, fn: Callable[[int], T]) -> T:
        started = self._clock()
        attempt = 1
        while True:
            try:
                return fn(attempt)
            except TransientError as exc:
                self._sleep(self._wait_or_raise(op, key, exc, attempt, started))
                attempt += 1

    # -- operations ---------------------------------------------------------------------

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self._put(key, lambda: self.inner.put(key, data, mode=mode, retain_until=retain_until), lambda: data)

    def put_file(self, key, file, size, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self._put(key, lambda: self.inner.put_file(key, file, size, mode=mode, retain_until=retain_until),
                  lambda: read_spool(file, size))

    def _put(self, key: str, send: Callable[[], None], content: Callable[[], bytes | memoryview]) -> None:
        def attempt(n: int) -> None:
            try:
                send()
            except AlreadyExists:
                # An earlier attempt may have stored the object and lost only the response.
                if n == 1 or not self._stored_equals(key, content()):
                    raise

        self._call("put", key, attempt)

    def _stored_equals(self, key: str, data: bytes | memoryview) -> bool:
        """True when `key` holds exactly `data` (size first, so a mismatch rarely costs a download).

        Content-addressed writers make this safe: an identical object from a concurrent writer
        is as good as our own.
        """
        try:
            if self.inner.head(key).size != memoryview(data).nbytes:
                return False
            return self.inner.get(key) == bytes(data)
        except NotFound:  # deleted meanwhile: still someone else's key, not our success
            return False

    def get(self, key, *, offset=0, length=None) -> bytes:
        return self._call("get", key, lambda _: self.inner.get(key, offset=offset, length=length))

    def head(self, key) -> ObjectInfo:
        return self._call("head", key, lambda _: self.inner.head(key))

    def delete(self, key) -> None:
        self._call("delete", key, lambda _: self.inner.delete(key))

    def lock_policy(self) -> LockPolicy | None:
        return self._call("lock policy", "", lambda _: self.inner.lock_policy())

    def extend_retention(self, key, mode, until) -> None:
        self._call("extend retention", key, lambda _: self.inner.extend_retention(key, mode, until))

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        return self._call("list leftovers", "", lambda _: self.inner.list_leftovers(older_than))

    def remove_leftover(self, leftover: Leftover) -> None:
        self._call("remove leftover", leftover.name, lambda _: self.inner.remove_leftover(leftover))

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Restart a failed listing, skipping keys already yielded.

        The set of yielded keys (not a "last key" cursor) keeps this correct for backends that
        do not list in sorted order. A pass that yielded new keys before failing resets the
        attempt count and deadline, so a very long listing survives occasional faults.
        """
        seen: set[str] = set()
        started = self._clock()
        attempt = 1
        while True:
            progressed = False
            try:
                for info in self.inner.list(prefix):
                    if info.key in seen:
                        continue
                    seen.add(info.key)
                    progressed = True
                    yield info
                return
            except TransientError as exc:
                if progressed:
                    started, attempt = self._clock(), 1
                self._sleep(self._wait_or_raise("list", prefix, exc, attempt, started))
                attempt += 1
