"""Repository URL -> backend, and `agent login SERVICE` -> its auth module. Cloud SDKs are
imported only when their scheme (or login) is used.

Each backend class offers `from_url(url: SplitResult, options: dict[str, str])`. Adding a
backend is one line here plus one optional extra in pyproject.toml; a backend with an OAuth login
adds one more line to `_LOGINS`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from backends.base import Backend
from backends.errors import BackendError

# scheme -> (module:class, pip extra or None)
_SCHEMES: dict[str, tuple[str, str | None]] = {
    "file": ("backends.local:LocalBackend", None),
    "memory": ("backends.memory:MemoryBackend", None),
    "s3": ("backends.s3:S3Backend", "s3"),
    "gs": ("backends.gcs:GCSBackend", "gcs"),
    "sftp": ("backends.sftp:SFTPBackend", "sftp"),
    "smb": ("backends.smb:SMBBackend", "smb"),
    "gdrive": ("backends.gdrive:GDriveBackend", "gdrive"),
    "dropbox": ("backends.dropbox.backend:DropboxBackend", "dropbox"),
    "onedrive": ("backends.onedrive.backend:OneDriveBackend", "onedrive"),
}

# `agent login SERVICE` -> the module with its `default_token_path()` and `login(...)`; the pip
# extra is that of the scheme of the same name.
_LOGINS: dict[str, str] = {
    "gdrive": "backends.gdrive.auth",
    "dropbox": "backends.dropbox.auth",
    "onedrive": "backends.onedrive.auth",
}

_SECRET_QUERY_KEYS = {"password", "secret", "token", "key", "access_key", "secret_key", "sas", "sig"}


class BackendUnavailable(BackendError):
    """The backend's optional dependencies are not installed.

    `package` is the missing Python package and `install` the command that adds it; both are None
    when the backend itself is not part of this build.
    """

    def __init__(self, message: str, *, package: str | None = None, install: str | None = None):
        super().__init__(message)
        self.package = package
        self.install = install


def redact_url(url: str) -> str:
    """Drop passwords and secret query values so a URL can be printed or logged."""
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:  # a plain path (or a Windows drive letter)
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}{':***' if ':' in userinfo else ''}@{host}"
    query = "&".join(f"{k}={_redact_value(k, v)}" for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_value(name: str, value: str) -> str:
    """A secret option's value, or a nested URL's password (?endpoint=https://key:secret@host)."""
    if name.lower() in _SECRET_QUERY_KEYS:
        return "***"
    return redact_url(value) if "://" in value else value


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:
        path = os.path.abspath(os.path.expanduser(url))
        return SplitResult("file", "", path, "", "")
    return parts


def open_backend(url: str) -> Backend:
    """Instantiate the backend for `url` (a path, file://, memory://, s3://, gs://, sftp://, smb://)."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        from backends.local import LocalBackend

        return LocalBackend(parts.path, create=False)
    try:
        target, extra = _SCHEMES[scheme]
    except KeyError:
        known = ", ".join(sorted(s + "://" for s in _SCHEMES))
        raise BackendError(f"unknown repository scheme {scheme!r} in {redact_url(url)}; known: {known}") from None
    module_name, class_name = target.split(":")
    cls = getattr(_import(module_name, f"the {scheme}:// backend", extra), class_name)
    return cls.from_url(parts, dict(parse_qsl(parts.query)))


def login_module(service: str) -> ModuleType:
    """The auth module behind `agent login SERVICE`, imported now (not when the CLI starts).

    BackendUnavailable names the extra to install when the service's SDK is missing.
    """
    try:
        module_name = _LOGINS[service]
    except KeyError:
        raise BackendError(f"there is no login for {service!r}; known: {', '.join(_LOGINS)}") from None
    return _import(module_name, f"logging in to {service}", _SCHEMES[service][1])


def _import(module_name: str, what: str, extra: str | None) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("backends."):
            raise BackendUnavailable(f"{what} is not part of this build") from None
        install = f"pip install 'agent-imagebackup[{extra}]'" if extra else "reinstall agent-imagebackup"
        raise BackendUnavailable(f"{what} needs the Python package {exc.name!r}; install it with: {install}",
                                 package=exc.name, install=install) from None
