"""The one place where Drive SDK, auth and transport exceptions become backend errors.

A 403 means very different things on Drive, told apart only by the `reason` in the JSON body:
throttling (retry later), a full Drive or the daily upload cap (stop; retrying cannot help
today), or a real permission problem.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import httplib2
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from backends.errors import (
    AuthError,
    BackendError,
    InvalidRange,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientError,
)

LOGIN_HINT = "run `agent login gdrive` again"
_THROTTLED = {"rateLimitExceeded", "userRateLimitExceeded", "sharingRateLimitExceeded", "backendError",
              "internalError"}
_FULL = {"storageQuotaExceeded", "quotaExceeded", "teamDriveFileLimitExceeded", "numChildrenInNonRootLimitExceeded",
         "activeItemCreationLimitExceeded", "downloadQuotaExceeded"}
_DAILY = {"dailyLimitExceeded", "uploadLimitExceeded"}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_NETWORK = (ConnectionError, TimeoutError, socket.timeout, ssl.SSLError, http.client.HTTPException,
            httplib2.HttpLib2Error)


def _reason_and_message(exc: HttpError) -> tuple[str, str]:
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        first = (error.get("errors") or [{}])[0]
        return str(first.get("reason", "")), str(error.get("message") or first.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return "", exc.content.decode("utf-8", "replace")[:200] if isinstance(exc.content, bytes) else ""


def _retry_after(exc: HttpError) -> float | None:
    try:
        return float(exc.resp.get("retry-after"))
    except (TypeError, ValueError):
        return None


def translate(exc: BaseException, what: str, key: str | None = None) -> BackendError:
    """Map `exc` (raised while working on `what`, e.g. "gdrive://Backups/x/data/aa") to a BackendError."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, HttpError):
        status = exc.resp.status
        reason, text = _reason_and_message(exc)
        message = f"{what}: HTTP {status} {reason or ''} {text}".rstrip()
        if status == 404:
            return NotFound(key or what)
        if status == 416:
            return InvalidRange(message)
        if status == 401:
            return AuthError(f"{message}; {LOGIN_HINT}")
        if status == 403 and reason in _DAILY:
            return QuotaExceeded(f"{what}: Google Drive's daily upload limit (about 750 GB per user) is reached "
                                 f"({reason}); this run stops here and the next run resumes where it stopped")
        if status == 403 and reason in _FULL:
            return QuotaExceeded(f"{message}: the Drive (or shared drive) is full; free space or buy more storage")
        if status in _TRANSIENT_STATUS or (status == 403 and reason in _THROTTLED):
            return TransientError(message, retry_after=_retry_after(exc))
        if status == 403:
            return PermissionDenied(message)
        return BackendError(message)
    if isinstance(exc, auth_exceptions.RefreshError) and getattr(exc, "retryable", False):
        return TransientError(f"{what}: Google's token server failed for now: {exc}")  # its 5xx, not a bad token
    if isinstance(exc, auth_exceptions.RefreshError):
        return AuthError(f"{what}: the Google Drive token was refused ({exc}); it expired or was revoked: "
                         f"{LOGIN_HINT}")
    if isinstance(exc, auth_exceptions.TransportError):
        return TransientError(f"{what}: cannot reach Google's token server: {exc}")
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return AuthError(f"{what}: {exc}; {LOGIN_HINT}")
    if isinstance(exc, _NETWORK) or (isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    return BackendError(f"{what}: {type(exc).__name__}: {exc}")

#: what the SDK, google-auth and the transport raise; anything else is a bug and propagates as is
SDK_ERRORS = (HttpError, auth_exceptions.GoogleAuthError, *_NETWORK, OSError)
