"""Backends that wrap backends: retry, limits, accounting, read-only, fault injection.

`compose` is the one place the stack is assembled, so every caller gets the same order.
"""

from __future__ import annotations

from typing import Any, Mapping

from backends.base import Backend
from backends.middleware.accounting import Accounting, AccountingBackend, Stats
from backends.middleware.faulty import FaultyBackend, Rule
from backends.middleware.limits import BandwidthLimitBackend, BandwidthLimiter, ConnectionLimitBackend
from backends.middleware.readonly import ReadOnlyBackend
from backends.middleware.retry import RetryBackend
from backends.middleware.wrapper import Middleware

__all__ = [
    "Accounting", "AccountingBackend", "BandwidthLimitBackend", "BandwidthLimiter",
    "ConnectionLimitBackend", "FaultyBackend", "Middleware", "ReadOnlyBackend", "RetryBackend",
    "Rule", "Stats", "compose",
]


def compose(backend: Backend, *, retry: bool | Mapping[str, Any] = True, max_connections: int | None = None,
            upload_limiter: BandwidthLimiter | None = None, download_limiter: BandwidthLimiter | None = None,
            read_only: bool = False, accounting: Accounting | None = None) -> Backend:
    """Wrap `backend` as read-only > accounting > retry > bandwidth > connection limit > backend.

    Outside in, and why:

    - read-only first: a refused write does no work at all and is not counted as traffic.
    - accounting outside retry: it counts logical operations and their final outcome, once each,
      which is what progress and statistics report; retries show in `RetryBackend.retries`.
      Cost estimates should add those retried requests (they are billed too).
    - retry outside the limits: every attempt is charged bandwidth (a resend really uses the
      link) and takes a connection slot, while a request sleeping in backoff holds neither.
    - bandwidth outside the connection limit: a thread waiting for tokens does not hold a slot
      that another thread could use to send.

    `retry` may be a mapping of RetryBackend keyword arguments. `max_connections=None` enforces
    the backend's declared `capabilities.max_connections`; `accounting` is the Accounting to
    count into (None: no accounting layer).
    """
    stack = backend
    if max_connections is None:
        max_connections = backend.capabilities.max_connections
    stack = ConnectionLimitBackend(stack, max_connections)
    if upload_limiter is not None or download_limiter is not None:
        stack = BandwidthLimitBackend(stack, upload_limiter, download_limiter)
    if retry:
        stack = RetryBackend(stack, **(retry if isinstance(retry, Mapping) else {}))
    if accounting is not None:
        stack = AccountingBackend(stack, accounting)
    if read_only:
        stack = ReadOnlyBackend(stack)
    return stack
