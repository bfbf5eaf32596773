"""In-memory backend: for tests and dry runs; the reference behaviour of the contract."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Iterator, Sequence

from backends.base import (
    Backend,
    Capabilities,
    Leftover,
    ObjectInfo,
    PutMode,
    check_range,
    validate_key,
    validate_prefix,
)
from backends.errors import AlreadyExists, InvalidKey, NotFound, Unsupported

_KIND = "unfinished upload"


class MemoryBackend(Backend):
    capabilities = Capabilities(max_connections=16)

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._objects: dict[str, tuple[bytes, datetime]] = {}
        self._unfinished: dict[str, tuple[str, int, float]] = {}  # ref -> key, size, time started
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url, options) -> MemoryBackend:
        return cls(url.netloc or "memory")

    @property
    def location(self) -> str:
        return f"memory://{self._name}"

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        validate_key(key)
        if retain_until is not None:
            raise Unsupported("memory:// has no object lock; retain_until cannot be honoured")
        blob = bytes(data)
        with self._lock:
            if mode is PutMode.CREATE and key in self._objects:
                raise AlreadyExists(key)
            self._objects[key] = (blob, datetime.now(UTC))

    def get(self, key, *, offset=0, length=None) -> bytes:
        validate_key(key)
        with self._lock:
            try:
                blob, _ = self._objects[key]
            except KeyError:
                raise NotFound(key) from None
        n = check_range(len(blob), offset, length)
        return blob[offset:offset + n]

    def head(self, key) -> ObjectInfo:
        validate_key(key)
        with self._lock:
            try:
                blob, mtime = self._objects[key]
            except KeyError:
                raise NotFound(key) from None
        return ObjectInfo(key, len(blob), mtime)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        with self._lock:
            items = sorted((k, len(v[0]), v[1]) for k, v in self._objects.items() if k.startswith(prefix))
        for key, size, mtime in items:
            yield ObjectInfo(key, size, mtime)

    def delete(self, key) -> None:
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def interrupted_put(self, key: str, data: bytes, age: float = 0.0) -> None:
        """Leave what a put killed half-way leaves on a real backend, started `age` seconds ago
        (for tests: nothing else interrupts a write in memory)."""
        validate_key(key)
        with self._lock:
            self._unfinished[secrets.token_hex(8)] = (key, len(data), time.time() - age)

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        now = time.time()
        with self._lock:
            items = sorted(self._unfinished.items(), key=lambda item: item[1])
        return [Leftover(_KIND, key, size, now - started, ref)
                for ref, (key, size, started) in items if now - started >= older_than]

    def remove_leftover(self, leftover: Leftover) -> None:
        if leftover.kind != _KIND:
            raise InvalidKey(f"not a leftover of this backend: {leftover.kind} {leftover.name!r}")
        with self._lock:
            self._unfinished.pop(leftover.ref, None)
