"""SMB backend (smbprotocol's smbclient): a repository folder on a Windows or Samba share.

URL: smb://[domain;]user@host[:port]/share/path[?encrypt=auto|required|off&timeout=30]
The password comes from AGENT_SMB_PASSWORD, never from the URL (shell history, logs and
process lists would keep it); without one, smbprotocol tries Kerberos.

Signing is always required. `encrypt=auto` (the default) turns on SMB3 encryption whenever the
negotiated dialect offers it, `required` refuses a server that cannot encrypt, `off` leaves the
choice to the server (signed, not sealed).

Atomicity: objects are written to a hidden ".tmp-<name>.<random>" beside their final name and
published with FileRenameInformation: ReplaceIfExists for OVERWRITE, not for CREATE (the server
answers OBJECT_NAME_COLLISION). Each instance keeps its own smbclient connection cache (one
signed/sealed TCP connection shared by all threads; smbprotocol multiplexes requests on it).
"""

from __future__ import annotations

import errno
import ntpath
import os
import posixpath
import socket
import stat
import threading
from datetime import UTC, datetime
from typing import Any, Iterator, Sequence
from urllib.parse import SplitResult, unquote

import smbclient
from smbclient._io import SMBFileTransaction, SMBRawIO, set_info
from smbclient._pool import ClientConfig
from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBAuthenticationError, SMBConnectionClosed, SMBException, SMBResponseException
from smbprotocol.file_info import FileRenameInformation
from smbprotocol.header import NtStatus
from smbprotocol.open import CreateOptions, FilePipePrinterAccessMask
from smbprotocol.tree import TreeConnect

from backends import env, tempfiles
from backends.base import (
    Backend,
    Capabilities,
    Leftover,
    ObjectInfo,
    PutMode,
    check_range,
    validate_key,
    validate_prefix,
)
from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientError,
    Unsupported,
)

_OPTIONS = ("encrypt", "timeout")
_ENCRYPT_MODES = ("auto", "required", "off")
_STATUS_QUOTA_EXCEEDED = 0xC0000044
_STATUS_NETWORK_SESSION_EXPIRED = 0xC000035C

_NOT_FOUND = {NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, NtStatus.STATUS_OBJECT_PATH_NOT_FOUND,
              NtStatus.STATUS_NO_SUCH_FILE, NtStatus.STATUS_NOT_FOUND, NtStatus.STATUS_DELETE_PENDING}
_DENIED = {NtStatus.STATUS_ACCESS_DENIED, NtStatus.STATUS_PRIVILEGE_NOT_HELD, NtStatus.STATUS_CANNOT_DELETE}
_AUTH = {NtStatus.STATUS_LOGON_FAILURE, NtStatus.STATUS_WRONG_PASSWORD, NtStatus.STATUS_PASSWORD_EXPIRED}
_FULL = {NtStatus.STATUS_DISK_FULL, _STATUS_QUOTA_EXCEEDED}
_TRANSIENT = {NtStatus.STATUS_NETWORK_NAME_DELETED, NtStatus.STATUS_USER_SESSION_DELETED,
              NtStatus.STATUS_IO_TIMEOUT, NtStatus.STATUS_INSUFF_SERVER_RESOURCES,
              NtStatus.STATUS_INSUFFICIENT_RESOURCES, NtStatus.STATUS_SERVER_UNAVAILABLE,
              NtStatus.STATUS_SHARING_VIOLATION, NtStatus.STATUS_FILE_CLOSED, _STATUS_NETWORK_SESSION_EXPIRED}
_NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
                   errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "ntstatus", None)  # smbclient's SMBOSError
    if status is None and isinstance(exc, SMBResponseException):
        status = exc.status
    return status


def _translate(exc: BaseException, what: str) -> BackendError:
    """The one place that maps smbprotocol/smbclient/socket errors onto the backend error tree."""
    if isinstance(exc, BackendError):
        return exc
    status = _status(exc)
    if status in _NOT_FOUND:
        return NotFound(what)
    if status == NtStatus.STATUS_OBJECT_NAME_COLLISION:
        return AlreadyExists(what)
    if status in _DENIED:
        return PermissionDenied(f"{what}: access denied by the SMB server")
    if status in _AUTH or isinstance(exc, SMBAuthenticationError):
        return AuthError(f"{what}: SMB logon failed; check the user and AGENT_SMB_PASSWORD")
    if status in _FULL:
        return QuotaExceeded(f"{what}: the share is full or over quota")
    if status in _TRANSIENT:
        return TransientError(f"{what}: {exc}")
    if status == NtStatus.STATUS_BAD_NETWORK_NAME:
        return BackendError(f"{what}: no such share on the server")
    if isinstance(exc, (SMBConnectionClosed, ConnectionError, TimeoutError, socket.timeout, EOFError)):
        return TransientError(f"{what}: connection problem ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return TransientError(f"{what}: connection problem ({exc})")
    if isinstance(exc, SMBException) and "guest" in str(exc).lower():
        return AuthError(f"{what}: the server logged us on as a guest, which can neither sign nor encrypt")
    return BackendError(f"{what}: {type(exc).__name__}: {exc}")


class SMBBackend(Backend):
    def __init__(self, host: str, share: str, root: str = "", *, port: int = 445, username: str | None = None,
                 password: str | None = None, encrypt: str = "auto", timeout: float = 30.0) -> None:
        if encrypt not in _ENCRYPT_MODES:
            raise BackendError(f"encrypt must be one of {', '.join(_ENCRYPT_MODES)}, got {encrypt!r}")
        if not share or "/" in share or "\\" in share:
            raise BackendError(f"invalid SMB share name {share!r}")
        self.host, self.port, self.share = host, port, share
        self.username = username
        self.root = posixpath.normpath("/" + root.strip("/")).lstrip("/")  # path inside the share, "" = top
        self.encrypt_mode = encrypt
        self._password = password
        self._timeout = timeout
        self._cache: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._encrypt: bool | None = None  # decided per connection
        self.capabilities = Capabilities(range_reads=True, conditional_put=True, object_lock=False,
                                         atomic_overwrite=True, max_connections=4,
                                         preferred_object_size=16 << 20, max_object_size=1 << 40)

    @classmethod
    def from_url(cls, url: SplitResult, options: dict[str, str]) -> SMBBackend:
        if url.password is not None:
            raise BackendError("refusing an smb:// URL that contains a password (it would leak into shell "
                               "history and logs); set AGENT_SMB_PASSWORD instead")
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise BackendError(f"unknown smb:// option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
        parts = [p for p in unquote(url.path).split("/") if p]
        if not url.hostname or not parts:
            raise BackendError("smb:// URL needs a host and a share: smb://user@host[:port]/share[/path]")
        try:
            port = url.port or 445
            timeout = float(options.get("timeout", 30))
        except ValueError as exc:
            raise BackendError(f"invalid smb:// URL: {exc}") from None
        username = unquote(url.username).replace(";", "\\") if url.username else None
        return cls(url.hostname, parts[0], "/".join(parts[1:]), port=port, username=username,
                   password=os.environ.get(env.SMB_PASSWORD) or None,
                   encrypt=options.get("encrypt", "auto"), timeout=timeout)

    @property
    def location(self) -> str:
        user = f"{self.username.replace(chr(92), ';')}@" if self.username else ""
        path = f"/{self.root}" if self.root else ""
        return f"smb://{user}{self.host}:{self.port}/{self.share}{path}"

    def _session_flags(self) -> tuple[bool, bool] | None:
        with self._lock:
            connection = self._cache.get(self._cache_key)
            sessions = list(connection.session_table.values()) if connection else []
            if not sessions:
                return None
            return bool(sessions[0].encrypt_data), bool(sessions[0].signing_required or sessions[0].encrypt_data)

    @property
    def encrypted(self) -> bool | None:
        """Whether the current session seals its messages (None before the first call)."""
        flags = self._session_flags()
        return None if flags is None else flags[0]

    @property
    def signed(self) -> bool | None:
        """Whether the current session signs (or seals, which implies it) every message."""
        flags = self._session_flags()
        return None if flags is None else flags[1]

    # -- connection ---------------------------------------------------------------------------

    @property
    def _cache_key(self) -> str:
        return f"{self.host.lower()}:{self.port}"

    def _connect_locked(self) -> None:
        """A fresh signed connection and session, encrypted as `encrypt_mode` asks."""
        old = self._cache.pop(self._cache_key, None)
        if old is not None:
            try:
                old.disconnect(close=True, timeout=1)
            except Exception:  # noqa: BLE001 - the old connection is already broken
                pass
        connection = Connection(ClientConfig().client_guid, self.host, self.port, require_signing=True)
        try:
            connection.connect(timeout=self._timeout)
        except ValueError as exc:  # smbprotocol reports socket failures as ValueError
            cause = exc.__cause__
            if isinstance(cause, socket.gaierror):
                raise BackendError(f"{self.location}: cannot resolve host ({cause})") from None
            raise TransientError(f"{self.location}: cannot connect ({cause or exc})") from None
        can_encrypt = bool(connection.supports_encryption)
        if self.encrypt_mode == "required" and not can_encrypt:
            connection.disconnect(close=True, timeout=1)
            raise Unsupported(f"{self.location}: encrypt=required, but the server negotiated dialect "
                              f"0x{connection.dialect:04x} without SMB3 encryption")
        self._encrypt = {"required": True, "auto": can_encrypt, "off": False}[self.encrypt_mode]
        self._cache[self._cache_key] = connection
        try:
            session = smbclient.register_session(
                self.host, username=self.username, password=self._password, port=self.port,
                encrypt=self._encrypt, connection_timeout=self._timeout, connection_cache=self._cache,
                require_signing=True)
            # Connect the share now: smbclient reuses this tree, and a missing share fails here
            # with BAD_NETWORK_NAME instead of detouring through DFS referrals (not supported).
            TreeConnect(session, self._unc("")).connect()
        except BaseException:
            self._cache.pop(self._cache_key, None)
            connection.disconnect(close=True, timeout=1)
            raise

    def _kwargs(self) -> dict[str, Any]:
        """Connection arguments for smbclient calls; (re)connects when the connection died."""
        with self._lock:
            connection = self._cache.get(self._cache_key)
            if connection is None or not connection.transport.connected or not connection.session_table:
                try:
                    self._connect_locked()
                except Exception as exc:
                    raise _translate(exc, self.location) from exc
        return {"username": self.username, "password": self._password, "port": self.port,
                "encrypt": self._encrypt, "connection_timeout": self._timeout,
                "connection_cache": self._cache, "require_signing": True}

    def close(self) -> None:
        with self._lock:
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=self._cache)

    # -- paths ----------------------------------------------------------------------------------

    def _rel(self, key: str) -> str:
        """Share-relative Windows path of a key (or of a directory key)."""
        parts = ([self.root] if self.root else []) + ([key] if key else [])
        return "/".join(parts).replace("/", "\\")

    def _unc(self, rel: str) -> str:
        return rf"\\{self.host}\{self.share}" + (f"\\{rel}" if rel else "")

    # -- operations ---------------------------------------------------------------------------

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs, **self._kwargs())
        except (BackendError, ValueError) as exc:
            if isinstance(exc, ValueError) and exc.__cause__ is not None:
                raise _translate(exc.__cause__, what) from exc
            raise
        except Exception as exc:
            raise _translate(exc, what) from exc

    def _rename(self, src_rel: str, dst_rel: str, *, replace: bool) -> None:
        """Rename within the share in one compound request (open, set-info, close).

        smbclient.rename/replace first open the target with FILE_EXECUTE to resolve DFS, which
        Samba refuses for an existing file without an execute bit (e.g. create mask = 0600).
        """
        def rename(**kwargs) -> None:
            raw = SMBRawIO(self._unc(src_rel), mode="r", share_access="rwd",
                           desired_access=FilePipePrinterAccessMask.DELETE,
                           create_options=CreateOptions.FILE_OPEN_REPARSE_POINT, **kwargs)
            with SMBFileTransaction(raw) as transaction:
                info = FileRenameInformation()
                info["replace_if_exists"] = replace
                info["file_name"] = dst_rel
                set_info(transaction, info)

        self._call(dst_rel, rename)

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        if retain_until is not None:
            raise Unsupported("smb:// has no object lock; retain_until cannot be honoured")
        rel = self._rel(validate_key(key))
        parent, name = ntpath.split(rel)
        tmp = ntpath.join(parent, tempfiles.temp_name(name))
        try:
            try:
                self._write_tmp(key, tmp, data)
            except NotFound:
                self._call(key, smbclient.makedirs, self._unc(parent), exist_ok=True)
                self._write_tmp(key, tmp, data)
            self._rename(tmp, rel, replace=mode is PutMode.OVERWRITE)
        except AlreadyExists:
            self._discard(tmp)
            raise AlreadyExists(key) from None
        except BaseException as exc:
            if not isinstance(exc, TransientError):
                self._discard(tmp)
            raise

    def _write_tmp(self, key: str, tmp: str, data) -> None:
        def write(**kwargs) -> None:
            with smbclient.open_file(self._unc(tmp), mode="xb", buffering=0, **kwargs) as f:
                view = memoryview(data).cast("B")
                while view:
                    view = view[f.write(view):]
                f.flush()  # SMB2 FLUSH: durable on the server before it is published

        self._call(key, write)

    def _discard(self, tmp: str) -> None:
        try:
            self._call(tmp, smbclient.remove, self._unc(tmp))
        except BackendError:
            pass  # hidden from listings; the first error is the one worth reporting

    def get(self, key, *, offset=0, length=None) -> bytes:
        unc = self._unc(self._rel(validate_key(key)))

        def read(**kwargs) -> bytes:
            with smbclient.open_file(unc, mode="rb", buffering=0, share_access="rwd", **kwargs) as f:
                n = check_range(f.fd.end_of_file, offset, length)
                buf = bytearray(n)
                view, done = memoryview(buf), 0
                f.seek(offset)
                while done < n:
                    got = f.readinto(view[done:])
                    if not got:
                        raise TransientError(f"{key}: short read ({done} of {n} bytes); the object changed")
                    done += got
                return bytes(buf)

        return self._call(key, read)

    def head(self, key) -> ObjectInfo:
        st = self._call(key, smbclient.stat, self._unc(self._rel(validate_key(key))))
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(key)
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # walk only the directory the prefix points into, and only subdirectories it can match
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        yield from self._walk(base, prefix)

    def _scan(self, rel_dir: str) -> Sequence[tuple[str, bool, Any]]:
        """(name, is_dir, smb_info) of a directory's entries, sorted by name; [] when it is missing."""
        def scan(**kwargs) -> list:
            entries = smbclient.scandir(self._unc(self._rel(rel_dir)), **kwargs)  # exhausted: handle closed
            return sorted(((e.name, e.is_dir(), e.smb_info) for e in entries), key=lambda e: e[0])

        try:
            return self._call(rel_dir or "/", scan)
        except NotFound:
            return []

    def _walk(self, rel_dir: str, prefix: str) -> Iterator[ObjectInfo]:
        entries = self._scan(rel_dir)
        subdirs = []
        for name, is_dir, info in entries:
            if name.startswith("."):
                continue  # in-flight temporaries and anything else hidden
            key = f"{rel_dir}/{name}" if rel_dir else name
            if is_dir:
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    subdirs.append(key)
            elif key.startswith(prefix):
                yield ObjectInfo(key, info.end_of_file, info.last_write_time.astimezone(UTC))
        for sub in subdirs:
            yield from self._walk(sub, prefix)

    def delete(self, key) -> None:
        try:
            self._call(key, smbclient.remove, self._unc(self._rel(validate_key(key))))
        except NotFound:
            return

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        """Temporaries of writes that never finished (killed, or cut off: a put that loses its
        connection cannot remove its own), anywhere under the root, aged by their last write time."""
        found: list[Leftover] = []
        pending = [""]
        now = datetime.now(UTC).timestamp()
        while pending:
            rel_dir = pending.pop()
            for name, is_dir, info in self._scan(rel_dir):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if is_dir and not name.startswith("."):
                    pending.append(rel)
                elif not is_dir and tempfiles.is_temp(name):
                    item = tempfiles.leftover(rel, info.end_of_file, info.last_write_time.timestamp(), now)
                    if item.age >= older_than:
                        found.append(item)
        return found

    def remove_leftover(self, leftover: Leftover) -> None:
        rel = tempfiles.checked_path(leftover)
        try:
            self._call(rel, smbclient.remove, self._unc(self._rel(rel)))
        except NotFound:
            return
