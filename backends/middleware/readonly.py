"""Refuse writes, so verifying or restoring from a repository can never modify it."""

from __future__ import annotations

from backends.base import PutMode, validate_key
from backends.errors import PermissionDenied
from backends.middleware.wrapper import Middleware


class ReadOnlyBackend(Middleware):
    """put, delete and remove_leftover raise PermissionDenied (after key validation); reads pass through."""

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        validate_key(key)
        raise PermissionDenied(f"repository opened read-only: refusing to write {key!r}")

    def put_file(self, key, file, size, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self.put(key, b"", mode=mode, retain_until=retain_until)

    def delete(self, key) -> None:
        validate_key(key)
        raise PermissionDenied(f"repository opened read-only: refusing to delete {key!r}")

    def extend_retention(self, key, mode, until) -> None:
        validate_key(key)
        raise PermissionDenied(f"repository opened read-only: refusing to extend the retention of {key!r}")

    def remove_leftover(self, leftover) -> None:
        raise PermissionDenied(f"repository opened read-only: refusing to remove {leftover.kind} {leftover.name!r}")
