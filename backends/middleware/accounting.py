"""Count what a backend is asked to do: operations, bytes each way, errors by class.

These counts feed progress statistics and cloud cost estimates (providers bill per request
class and per byte of egress), so they are kept per logical operation.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, Sequence, TypeVar

from backends.base import Backend, Leftover, LockPolicy, ObjectInfo, PutMode
from backends.middleware.wrapper import Middleware

OPERATIONS = ("put", "get", "head", "list", "delete")
T = TypeVar("T")


@dataclass(frozen=True)
class Stats:
    """An immutable copy of the counters at one moment."""

    operations: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(OPERATIONS, 0)))
    bytes_up: int = 0
    bytes_down: int = 0
    objects_listed: int = 0
    errors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def total_operations(self) -> int:
        return sum(self.operations.values())

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())


class Accounting:
    """Thread-safe counters; one instance may be shared by several AccountingBackends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: Counter[str] = Counter(dict.fromkeys(OPERATIONS, 0))
        self._errors: Counter[str] = Counter()
        self._up = self._down = self._listed = 0

    def operation(self, kind: str) -> None:
        with self._lock:
            self._ops[kind] += 1

    def error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors[type(exc).__name__] += 1

    def transferred(self, *, up: int = 0, down: int = 0, listed: int = 0) -> None:
        with self._lock:
            self._up += up
            self._down += down
            self._listed += listed

    def snapshot(self) -> Stats:
        with self._lock:
            return Stats(MappingProxyType(dict(self._ops)), self._up, self._down, self._listed,
                         MappingProxyType(dict(self._errors)))


class AccountingBackend(Middleware):
    """Counts every call into `accounting` (a fresh one unless given), including failed ones.

    Bytes count only for calls that succeeded: a failed transfer is reported as an error.
    """

    def __init__(self, inner: Backend, accounting: Accounting | None = None) -> None:
        super().__init__(inner)
        self.accounting = accounting if accounting is not None else Accounting()

    def snapshot(self) -> Stats:
        return self.accounting.snapshot()

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self._put(lambda: self.inner.put(key, data, mode=mode, retain_until=retain_until), memoryview(data).nbytes)

    def put_file(self, key, file, size, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self._put(lambda: self.inner.put_file(key, file, size, mode=mode, retain_until=retain_until), size)

    def _put(self, send: Callable[[], None], size: int) -> None:
        self.accounting.operation("put")
        try:
            send()
        except Exception as exc:
            self.accounting.error(exc)
            raise
        self.accounting.transferred(up=size)

    def get(self, key, *, offset=0, length=None) -> bytes:
        self.accounting.operation("get")
        try:
            data = self.inner.get(key, offset=offset, length=length)
        except Exception as exc:
            self.accounting.error(exc)
            raise
        self.accounting.transferred(down=len(data))
        return data

    def head(self, key) -> ObjectInfo:
        self.accounting.operation("head")
        try:
            return self.inner.head(key)
        except Exception as exc:
            self.accounting.error(exc)
            raise

    def delete(self, key) -> None:
        self._count("delete", lambda: self.inner.delete(key))

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        """Counted as one listing (providers bill it as one), each leftover as an entry listed."""
        found = self._count("list", lambda: self.inner.list_leftovers(older_than))
        self.accounting.transferred(listed=len(found))
        return found

    def remove_leftover(self, leftover: Leftover) -> None:
        self._count("delete", lambda: self.inner.remove_leftover(leftover))

    def lock_policy(self) -> LockPolicy | None:
        return self._count("head", lambda: self.inner.lock_policy())

    def extend_retention(self, key, mode, until) -> None:
        """Its own kind: S3 bills it as a write (PutObjectRetention), and its count is what
        docs/ransomware.md bounds per night."""
        self._count("retention", lambda: self.inner.extend_retention(key, mode, until))

    def _count(self, kind: str, call: Callable[[], T]) -> T:
        self.accounting.operation(kind)
        try:
            return call()
        except Exception as exc:
            self.accounting.error(exc)
            raise

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        self.accounting.operation("list")
        try:
            for info in self.inner.list(prefix):
                self.accounting.transferred(listed=1)
                yield info
        except Exception as exc:
            self.accounting.error(exc)
            raise
