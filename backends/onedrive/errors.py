"""The one place where msgraph-sdk, httpx and msal failures become backend errors.

Graph reports errors as `{"error": {"code": ..., "message": ...}}`; the SDK raises them as
`ODataError` (an `APIError` with `.error.code`), the download host answers a bad Range with a
bare 416, and the upload-session loop sees plain httpx responses. All of them land here.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping

import httpx
from kiota_abstractions.api_error import APIError

from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    InvalidRange,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientError,
)

LOGIN_HINT = "run `agent login onedrive` again"
_QUOTA_CODES = {"insufficientStorage", "quotaLimitReached", "QuotaLimitReached"}
_TRANSIENT_STATUS = {429, 500, 502, 503, 504, 509}


def retry_after(headers) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), or None."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _graph_code(body: bytes) -> tuple[str, str]:
    try:
        error = json.loads(body or b"{}").get("error") or {}
        return str(error.get("code") or ""), str(error.get("message") or "")
    except (ValueError, AttributeError):
        return "", ""


def translate(exc: BaseException, what: str) -> BackendError:
    """Map any failure of a OneDrive call on `what` (a key or path, for messages) to the error tree."""
    if isinstance(exc, BackendError):
        return exc
    headers: Mapping[str, str] | None
    if isinstance(exc, httpx.HTTPStatusError):
        status, headers = exc.response.status_code, exc.response.headers
        code, text = _graph_code(exc.response.content)
    elif isinstance(exc, APIError):
        status, headers = exc.response_status_code or 0, exc.response_headers
        error = getattr(exc, "error", None)  # ODataError carries the Graph error object
        code = str(getattr(error, "code", "") or "")
        text = str(getattr(error, "message", "") or exc.message or "")
    elif isinstance(exc, (httpx.TransportError, TimeoutError)):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    else:
        return BackendError(f"{what}: {type(exc).__name__}: {exc}")
    message = f"{what}: {status} {code} {text}".rstrip()
    if status == 404 or code == "itemNotFound":
        return NotFound(what)
    if code == "nameAlreadyExists":
        return AlreadyExists(what)
    if status == 416:
        return InvalidRange(message)
    if status == 401:
        return AuthError(f"OneDrive refused the sign-in ({code or status}); {LOGIN_HINT}")
    if status == 507 or code in _QUOTA_CODES:
        return QuotaExceeded(f"{message}: the OneDrive is full or over quota; free space or buy more, "
                             "then run again (finished uploads are kept)")
    if status == 403:
        return PermissionDenied(message)
    if status in _TRANSIENT_STATUS:
        return TransientError(message, retry_after=retry_after(headers))
    return BackendError(message)
