"""The delegating base every middleware extends.

A middleware is itself a Backend, so layers stack in any order and the conformance suite can
test each stack; it forwards everything it does not change to `inner`.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from backends.base import Backend, Capabilities, Leftover, LockPolicy, ObjectInfo, PutMode


class Middleware(Backend):
    """Forwards every call to `inner`; subclasses override only what they change."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return self.inner.capabilities

    @property
    def location(self) -> str:
        return self.inner.location

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self.inner.put(key, data, mode=mode, retain_until=retain_until)

    def put_file(self, key, file, size, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self.inner.put_file(key, file, size, mode=mode, retain_until=retain_until)

    def get(self, key, *, offset=0, length=None) -> bytes:
        return self.inner.get(key, offset=offset, length=length)

    def head(self, key) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key) -> None:
        self.inner.delete(key)

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        return self.inner.list_leftovers(older_than)

    def remove_leftover(self, leftover: Leftover) -> None:
        self.inner.remove_leftover(leftover)

    def lock_policy(self) -> LockPolicy | None:
        return self.inner.lock_policy()

    def extend_retention(self, key, mode, until) -> None:
        self.inner.extend_retention(key, mode, until)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"
