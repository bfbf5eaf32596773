"""The storage contract every backend implements (see docs/backends.md).

A backend stores opaque bytes under validated keys. It knows nothing of repositories,
encryption or chunks; the conformance suite in tests/backends/conformance.py proves each
implementation keeps this contract.
"""

from __future__ import annotations

import abc
import enum
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Iterator, Sequence

from backends.errors import InvalidKey, InvalidRange, Unsupported

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")
MAX_KEY_LENGTH = 512


class PutMode(enum.Enum):
    OVERWRITE = "overwrite"
    CREATE = "create"  # fail with AlreadyExists when the key is present


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: datetime | None = None
    etag: str | None = None


@dataclass(frozen=True)
class LockPolicy:
    """The retention the storage gives every new object version (S3 Object Lock's default rule).

    What an object was last given is then known without asking for it: its upload time plus
    `period`, unless the agent extended it since (agent.repo.holds keeps that record).
    """

    mode: str  # GOVERNANCE or COMPLIANCE
    period: timedelta


@dataclass(frozen=True)
class Leftover:
    """What a write that never finished left behind: hidden from `list`, yet taking space (or billed).

    `name` says where, for people (a temporary file's path under the root, or the key an upload
    was for); `ref` is what `remove_leftover` needs to find it again (that path, or an upload id).
    `age` is seconds since it was last written to (a file's mtime; an upload's last part, or its
    start), as the storage stamped it; `size` is None where the storage cannot tell.
    """

    kind: str
    name: str
    size: int | None
    age: float
    ref: str = ""


@dataclass(frozen=True)
class Capabilities:
    range_reads: bool = True
    conditional_put: bool = True
    object_lock: bool = False
    atomic_overwrite: bool = True
    max_connections: int = 8
    preferred_object_size: int = 16 << 20
    max_object_size: int = 5 << 30


def validate_key(key: str) -> str:
    """Reject keys that could escape a directory, collide by case or confuse a provider."""
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not _KEY_RE.match(key):
        raise InvalidKey(f"invalid storage key {key!r}")
    if any(part in (".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid storage key {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix is empty or a key, optionally ending in '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/"))
    return prefix


class Backend(abc.ABC):
    """Opaque key/value storage. Implementations must be safe to call from several threads."""

    capabilities: Capabilities = Capabilities()

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where this backend stores data, with any secret removed (safe to print)."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes | memoryview, *, mode: PutMode = PutMode.OVERWRITE,
            retain_until: datetime | None = None) -> None:
        """Store `data` atomically: readers see the old object, the new one, or none; never a part."""

    def put_file(self, key: str, file: BinaryIO, size: int, *, mode: PutMode = PutMode.OVERWRITE,
                 retain_until: datetime | None = None) -> None:
        """Store the first `size` bytes of an open, flushed file, with the same guarantees as `put`.

        Lets writers spool large objects (packs) to disk rather than hold them in memory. This
        default reads the file into memory; backends that can stream from it override it.
        """
        self.put(key, read_spool(file, size), mode=mode, retain_until=retain_until)

    @abc.abstractmethod
    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """Read the object, or `length` bytes from `offset`; a range past the end raises InvalidRange."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size and metadata; NotFound when absent."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`; never in-flight temporary uploads."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; absent keys are fine (idempotent)."""

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        """Remains of writes that never finished (the writer was killed or lost its connection),
        at least `older_than` seconds old, so that a maintenance run can remove them.

        The default has none: backends whose interrupted uploads expire by themselves (GCS
        resumable sessions, the drives' upload sessions) keep it. Backends that write a hidden
        temporary first, or upload in parts, override it and `remove_leftover`.
        """
        return []

    def remove_leftover(self, leftover: Leftover) -> None:
        """Remove one leftover that `list_leftovers` returned; one already gone is fine. Never
        removes an object: a leftover that does not name one of this backend's remains is refused."""
        raise Unsupported(f"{self.location} leaves no leftovers to remove ({leftover.kind} {leftover.name!r})")

    def lock_policy(self) -> LockPolicy | None:
        """The default retention of new objects, None when the storage gives none (no Object Lock,
        or a bucket without a default rule). Backends without object retention return None."""
        return None

    def extend_retention(self, key: str, mode: str, until: datetime) -> None:
        """Keep the current version of `key` until `until` (timezone-aware), in `mode`. Only ever
        lengthens: the storage refuses to shorten retention without a bypass right nobody gets."""
        raise Unsupported(f"{self.location} has no object retention to extend")

    def close(self) -> None:
        """Release connections; the default has nothing to release."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_spool(file: BinaryIO, size: int) -> bytes:
    """The first `size` bytes of `file`, whatever its position; a shorter file is an error."""
    data = os.pread(file.fileno(), size, 0) if size else b""
    if len(data) != size:
        raise ValueError(f"spooled file holds {len(data)} bytes, not the {size} to store")
    return data


def endpoint_label(endpoint: str | None) -> str:
    """' at scheme://host:port' for a custom endpoint, userinfo dropped, for a printable location."""
    if not endpoint:
        return ""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    return f" at {parts.scheme}://{parts.hostname}{':%d' % parts.port if parts.port else ''}"


def http_range(offset: int, length: int | None) -> str | None:
    """The HTTP Range header value for a ranged get, None for the whole object. Validates the
    arguments; a zero-length read cannot be expressed in HTTP, so callers handle length 0 first."""
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must be non-negative")
    if length is not None:
        return f"bytes={offset}-{offset + length - 1}"
    return f"bytes={offset}-" if offset else None


def check_range(size: int, offset: int, length: int | None) -> int:
    """Validate a range against an object size and return the resolved length."""
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must be non-negative")
    end = size if length is None else offset + length
    if offset > size or end > size:
        raise InvalidRange(f"range {offset}+{length} past end of object ({size} bytes)")
    return end - offset
