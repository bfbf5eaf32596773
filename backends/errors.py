"""Backend error tree.

Every backend translates its SDK's exceptions into these in one place, so the layers above
never see an SDK type. Only `TransientError` is worth retrying.
"""


class BackendError(Exception):
    """Base of every storage error."""


class NotFound(BackendError, FileNotFoundError):
    """The key does not exist."""


class AlreadyExists(BackendError, FileExistsError):
    """A CREATE put found the key already present."""


class ObjectLocked(BackendError):
    """Retention (object lock) forbids deleting or overwriting the object."""


class InvalidRange(BackendError):
    """A ranged read asked for bytes past the end of the object."""


class AuthError(BackendError):
    """Credentials missing, expired or rejected."""


class PermissionDenied(BackendError, PermissionError):
    """Credentials are valid but not allowed to do this."""


class QuotaExceeded(BackendError):
    """The target is full or a provider quota (storage, daily upload) is exhausted."""


class Unsupported(BackendError):
    """The backend lacks a capability the caller asked for."""


class InvalidKey(BackendError, ValueError):
    """A key that is not lowercase ASCII, relative and '/'-separated."""


class TransientError(BackendError):
    """Throttling, timeouts, resets: the only class the retry middleware retries.

    `retry_after` carries the server's hint in seconds when it gave one.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
