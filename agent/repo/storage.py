"""Opening the storage under a repository, and the one translation of its errors.

Backends raise backend errors (backends.errors); everything above the repository sees agent
errors (agent.errors) whose messages say what to do. The translation is here, once; the engine,
the nightly runner and the CLI never import a backend.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterator

from agent.config.bandwidth import RateSchedule
from agent.errors import AgentError, CorruptObject, StorageError
from backends.errors import (
    AuthError,
    BackendError,
    InvalidRange,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientError,
)
from backends.middleware.limits import BandwidthLimiter

if TYPE_CHECKING:
    from backends.base import Backend
    from backends.middleware import Accounting


def storage_error(exc: BackendError, what: str) -> AgentError:
    """A backend failure as the user-facing error: what failed, and what to do about it."""
    if isinstance(exc, AuthError):
        return StorageError(f"{what}: the storage rejected the credentials ({exc})",
                            hint="check the backend credentials")
    if isinstance(exc, PermissionDenied):
        return StorageError(f"{what}: permission denied ({exc})", hint="check access rights on the repository")
    if isinstance(exc, QuotaExceeded):
        return StorageError(f"{what}: the storage is full or over quota ({exc})",
                            hint="free space or raise the quota; the next run resumes where this one stopped")
    if isinstance(exc, TransientError):
        return StorageError(f"{what}: the storage kept failing ({exc})",
                            hint="check the network and the provider's status; the next run resumes")
    if isinstance(exc, (NotFound, InvalidRange)):
        return CorruptObject(f"{what}: object missing or truncated ({exc})")
    return StorageError(f"{what}: {exc}")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a block of storage calls; a backend error leaves it as the agent error for `what`."""
    try:
        yield
    except BackendError as exc:
        raise storage_error(exc, what) from None


def as_agent_error(exc: BaseException) -> AgentError | None:
    """The agent error for `exc` when it is one or a backend error that escaped a translation
    (the CLI's and the nightly runner's last resort); None for anything else (a bug)."""
    if isinstance(exc, AgentError):
        return exc
    if isinstance(exc, BackendError):
        return storage_error(exc, "storage error")
    return None


class ScheduledLimiter(BandwidthLimiter):
    """A token bucket whose rate follows a RateSchedule; re-checked at most every few seconds, so a
    run that spans 07:59 slows down at 08:00 by itself."""

    RECHECK_S = 5.0

    def __init__(self, schedule: RateSchedule, *, now: Callable[[], datetime] = datetime.now) -> None:
        self.schedule = schedule
        self._now = now
        super().__init__(self._current())
        self._checked = time.monotonic()

    def _current(self) -> float | None:
        t = self._now()
        return self.schedule.rate_at(t.hour * 60 + t.minute)

    def consume(self, n: int) -> None:
        mono = time.monotonic()
        if mono - self._checked >= self.RECHECK_S:
            self._checked = mono
            rate = self._current()
            if rate != self.rate:
                self.rate = rate
        super().consume(n)


def limiter_for(text: str | None) -> BandwidthLimiter | None:
    """The limiter for a flag/config value, or None when there is no limit at any time."""
    if not text:
        return None
    schedule = RateSchedule.parse(text)
    if schedule.is_unlimited:
        return None
    if len(schedule.spans) == 1 and schedule.spans[0][:2] == (0, 1440):
        return BandwidthLimiter(schedule.spans[0][2])
    return ScheduledLimiter(schedule)


def open_storage(url: str, *, limit_upload: str | None = None, limit_download: str | None = None,
                 accounting: Accounting | None = None) -> Backend:
    """The backend for `url` (a path or scheme://...), wrapped in the standard middleware stack
    (retry, connection and bandwidth limits, and `accounting` when given)."""
    from backends.middleware import compose
    from backends.registry import open_backend

    with translated("storage error"):  # an unknown scheme, a missing extra: the message says which
        backend = open_backend(url)
    return compose(backend, accounting=accounting, upload_limiter=limiter_for(limit_upload),
                   download_limiter=limiter_for(limit_download))


def new_accounting() -> Accounting:
    """A traffic counter for `open_storage` (bytes and operations per kind, for --json and stats)."""
    from backends.middleware import Accounting

    return Accounting()
