"""The one place where Dropbox SDK exceptions become backend errors.

Dropbox reports route errors as nested tagged unions (`path/conflict/file`,
`lookup_failed/incorrect_offset`, ...). Flattening an error into its chain of tags lets one
table of rules cover every route's error type instead of one `is_*()` ladder per route.
"""

from __future__ import annotations

from dropbox import exceptions as dbx_exc
from dropbox import stone_base
from requests import exceptions as req_exc

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

LOGIN_HINT = "run `agent login dropbox` again"
#: what the SDK and its transport raise; anything else is a bug and is not translated
SDK_ERRORS = (dbx_exc.DropboxException, req_exc.RequestException)

_QUOTA_TAGS = frozenset({"insufficient_space", "team_folder_insufficient_space", "member_folder_insufficient_space",
                         "upload_traffic_limit_reached", "insufficient_quota"})
# worth a fresh attempt: throttling, corruption in transit (the per-call content_hash caught it),
# upload-session trouble that restarting the whole put fixes, and a list cursor Dropbox reset
_TRANSIENT_TAGS = frozenset({"too_many_write_operations", "too_many_requests", "content_hash_mismatch",
                             "incorrect_offset", "lookup_failed", "internal_error", "reset"})
_DENIED_TAGS = frozenset({"no_write_permission", "access_restricted", "restricted_content", "operation_suppressed",
                          "team_folder", "not_allowed", "unsupported_file"})
_MISSING_TAGS = frozenset({"not_found", "not_file", "not_folder"})


def error_tags(error: object) -> list[str]:
    """The tags of a stone union, outermost first, following union values and struct fields."""
    tags: list[str] = []
    todo = [error]
    while todo:
        item = todo.pop(0)
        if isinstance(item, stone_base.Union):
            tags.append(item._tag)
            todo.append(item._value)
        elif isinstance(item, stone_base.Struct):
            todo.extend(getattr(item, name, None) for name in sorted(item._all_field_names_))
    return tags


def translate(exc: BaseException, what: str) -> BackendError:
    """Map a Dropbox SDK or transport exception to the backend error tree; `what` names the object."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, dbx_exc.ApiError):
        tags = error_tags(exc.error)
        message = f"{what}: {'/'.join(tags) or exc.error}"
        if _QUOTA_TAGS.intersection(tags):
            return QuotaExceeded(f"{message}: the Dropbox account is out of space or upload allowance")
        if _TRANSIENT_TAGS.intersection(tags):
            return TransientError(message)
        if "conflict" in tags:
            return AlreadyExists(what)
        if tags[:1] in (["path"], ["path_lookup"]) and _MISSING_TAGS.intersection(tags):
            return NotFound(what)
        if _DENIED_TAGS.intersection(tags):
            return PermissionDenied(message)
        return BackendError(message)
    if isinstance(exc, dbx_exc.RateLimitError):
        reason = error_tags(exc.error) if exc.error is not None else []
        return TransientError(f"{what}: Dropbox throttled the request ({'/'.join(reason) or 'rate limit'})",
                              retry_after=float(exc.backoff) if exc.backoff is not None else None)
    if isinstance(exc, dbx_exc.InternalServerError):
        return TransientError(f"{what}: Dropbox server error {exc.status_code}")
    if isinstance(exc, dbx_exc.AuthError):
        tags = error_tags(exc.error) if exc.error is not None else []
        if "missing_scope" in tags:
            scope = getattr(exc.error.get_missing_scope(), "required_scope", "?")
            return AuthError(f"{what}: the Dropbox app lacks the permission {scope!r}; enable it in the App "
                             f"Console (Permissions tab), then {LOGIN_HINT}")
        return AuthError(f"{what}: Dropbox rejected the login ({'/'.join(tags) or 'unauthorized'}); {LOGIN_HINT}")
    if isinstance(exc, dbx_exc.HttpError):  # BadInputError, 416 and other statuses the SDK does not type
        if exc.status_code == 416:
            return InvalidRange(f"{what}: range not satisfiable")
        if exc.status_code in (408, 502, 503, 504):
            return TransientError(f"{what}: HTTP {exc.status_code}")
        return BackendError(f"{what}: HTTP {exc.status_code}: {str(exc.body)[:200]}")
    if isinstance(exc, req_exc.SSLError):  # a certificate problem will not go away by retrying
        return BackendError(f"{what}: TLS error: {exc}")
    if isinstance(exc, (req_exc.ConnectionError, req_exc.Timeout, req_exc.ChunkedEncodingError,
                        req_exc.ContentDecodingError)):
        return TransientError(f"{what}: {exc.__class__.__name__}: {exc}")
    return BackendError(f"{what}: {exc.__class__.__name__}: {exc}")
