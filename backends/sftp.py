"""SFTP backend (paramiko): a repository directory on any SSH server, e.g. a NAS.

URL: sftp://user@host[:port]/absolute/path[?key=/path&known_hosts=/path&connections=4&timeout=30]

Security: the host key is always checked against known_hosts, so an unknown or changed server
is refused before any credential is sent; a password never goes in the URL (it would end up in
shell history, logs and process lists) but may come from AGENT_SFTP_PASSWORD.

Atomicity: objects are written to a hidden ".tmp-<name>.<random>" beside their final name,
then published by rename. OVERWRITE uses posix-rename@openssh.com (rename(2), replaces the
target); CREATE uses the plain SFTP rename, which OpenSSH implements with link(2) + unlink and
so fails, atomically, when the target exists. One SSH connection carries a small pool of SFTP
channels, each used by one thread at a time.
"""

from __future__ import annotations

import base64
import errno
import getpass
import hashlib
import os
import posixpath
import socket
import stat
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable, Iterator, Sequence
from urllib.parse import SplitResult, unquote

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

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

_OPTIONS = ("key", "known_hosts", "connections", "timeout")
_SMALL_READ = 256 << 10  # above this, ranged reads pipeline their requests (paramiko readv)
_NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
                   errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


class HostKeyError(AuthError):
    """The server's host key is unknown or has changed; nothing was sent to it."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (paramiko.SSHException, EOFError, TimeoutError, ConnectionError, socket.timeout)):
        return not isinstance(exc, paramiko.AuthenticationException)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return True
    # paramiko's channel raises a bare OSError("Socket is closed") when the session dies under a write
    return isinstance(exc, OSError) and (exc.errno in _NETWORK_ERRNOS or
                                         (exc.errno is None and str(exc) == "Socket is closed"))


def _translate(exc: BaseException, what: str) -> BackendError:
    """The one place that maps paramiko/socket/SFTP-status errors onto the backend error tree."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthError(f"{what}: SSH authentication failed ({exc}); check the user, the key (and "
                         f"AGENT_SFTP_KEY_PASSPHRASE if it is encrypted) or AGENT_SFTP_PASSWORD")
    if isinstance(exc, socket.gaierror):
        return BackendError(f"{what}: cannot resolve host ({exc})")
    if _is_connection_error(exc):
        return TransientError(f"{what}: connection problem ({type(exc).__name__}: {exc or 'dropped'})")
    if isinstance(exc, OSError):
        text = str(exc).lower()
        if exc.errno == errno.ENOENT:
            return NotFound(what)
        if exc.errno in (errno.EACCES, errno.EPERM) or "permission denied" in text:
            return PermissionDenied(f"{what}: permission denied")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "no space" in text or "quota" in text:
            return QuotaExceeded(f"{what}: no space left on the server")
    return BackendError(f"{what}: {type(exc).__name__}: {exc}")


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """First use: refuse, and tell the user how to check and accept the key."""

    def __init__(self, known_hosts: Path, host: str, port: int) -> None:
        self.known_hosts, self.host, self.port = known_hosts, host, port

    def missing_host_key(self, client, hostname, key) -> None:
        scan = f"ssh-keyscan -p {self.port} -t {key.get_name()} {self.host} >> {self.known_hosts}"
        raise HostKeyError(
            f"unknown SSH host key for {hostname}: {key.get_name()} {fingerprint(key)}. Check this fingerprint "
            f"with the server's administrator (on the server: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
            f"then accept it with: {scan}")


class _ChannelPool:
    """One SSH transport carrying up to `size` SFTP channels, each lent to one thread at a time.

    A dead transport is noticed when a channel is next taken, and replaced: a dropped
    connection costs the calls that were in flight (TransientError), not the backend.
    """

    def __init__(self, connect: Callable[[], paramiko.SSHClient], size: int, timeout: float) -> None:
        self._connect = connect
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._idle: list[paramiko.SFTPClient] = []

    def _transport(self) -> paramiko.Transport | None:
        return self._client.get_transport() if self._client is not None else None

    def _drop_client_locked(self) -> None:
        for sftp in self._idle:
            sftp.close()
        self._idle.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    def _take(self) -> paramiko.SFTPClient:
        with self._lock:
            transport = self._transport()
            if transport is None or not transport.is_active():
                self._drop_client_locked()
                self._client = self._connect()
            if self._idle:
                return self._idle.pop()
            assert self._client is not None  # a live transport is the client's, else one was just connected
            sftp = self._client.open_sftp()
        sftp.get_channel().settimeout(self._timeout)
        return sftp

    def _give(self, sftp: paramiko.SFTPClient, broken: bool) -> None:
        with self._lock:
            current = self._transport()
            if broken or current is None or sftp.get_channel().get_transport() is not current:
                sftp.close()
                if current is not None and not current.is_active():
                    self._drop_client_locked()
            else:
                self._idle.append(sftp)

    @contextmanager
    def channel(self) -> Iterator[paramiko.SFTPClient]:
        with self._slots:
            sftp = self._take()
            try:
                yield sftp
            except BaseException as exc:
                self._give(sftp, broken=_is_connection_error(exc))
                raise
            self._give(sftp, broken=False)

    def close(self) -> None:
        with self._lock:
            self._drop_client_locked()


def _statvfs_available(sftp: paramiko.SFTPClient, path: str) -> int | None:
    """Free bytes via statvfs@openssh.com, or None when the server lacks the extension."""
    try:
        kind, msg = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", path)
        if kind != CMD_EXTENDED_REPLY:
            return None
        _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
        return frsize * bavail
    except Exception:  # noqa: BLE001 - only a diagnosis; the original error is reported
        return None


def _fsync(sftp: paramiko.SFTPClient, f: paramiko.SFTPFile) -> None:
    """fsync@openssh.com, so a published object survives a server crash; skipped if unsupported."""
    try:
        sftp._request(CMD_EXTENDED, "fsync@openssh.com", f.handle)
    except OSError as exc:
        if "unsupported" not in str(exc).lower():
            raise


def _write_checked(sftp: paramiko.SFTPClient, f: paramiko.SFTPFile, payload: bytes) -> None:
    """Pipelined write that does not lose errors.

    paramiko's pipelined mode reads the servers' replies to writes without checking them, so a
    full disk would publish a truncated object. Its queue of outstanding requests is drained
    here, in order, raising on the first error status (OpenSSH replies in order).
    """
    f.set_pipelined(True)
    f.write(payload)
    f.flush()
    pending = f._reqs
    while pending:
        sftp._read_response(pending.popleft())  # raises IOError on an error status


def _is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode)
    except OSError:
        return False


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """mkdir -p with mode 0700, tolerating directories created concurrently."""
    try:
        sftp.mkdir(path, 0o700)
        return
    except OSError as exc:
        if exc.errno != errno.ENOENT or path in ("/", ""):
            if _is_dir(sftp, path):
                return
            raise
    _makedirs(sftp, posixpath.dirname(path))
    try:
        sftp.mkdir(path, 0o700)
    except OSError:
        if not _is_dir(sftp, path):
            raise


class SFTPBackend(Backend):
    def __init__(self, host: str, root: str, *, port: int = 22, username: str | None = None,
                 key_file: str | None = None, password: str | None = None, passphrase: str | None = None,
                 known_hosts: str | os.PathLike = "~/.ssh/known_hosts", connections: int = 4,
                 timeout: float = 30.0, durable: bool = True) -> None:
        if not root.startswith("/"):
            raise BackendError(f"sftp:// needs an absolute repository path, got {root!r}")
        if connections < 1:
            raise BackendError("connections must be at least 1")
        self.host, self.port = host, port
        self.username = username or getpass.getuser()
        self.root = posixpath.normpath(root).rstrip("/")  # "" for a repository at "/"
        self.durable = durable
        self._key_file = str(Path(key_file).expanduser()) if key_file else None
        self._password = password
        self._passphrase = passphrase
        self._known_hosts = Path(known_hosts).expanduser()
        self._timeout = timeout
        self.capabilities = Capabilities(range_reads=True, conditional_put=True, object_lock=False,
                                         atomic_overwrite=True, max_connections=connections,
                                         preferred_object_size=16 << 20, max_object_size=1 << 40)
        self._pool = _ChannelPool(self._connect, connections, timeout)

    @classmethod
    def from_url(cls, url: SplitResult, options: dict[str, str]) -> SFTPBackend:
        if url.password is not None:
            raise BackendError("refusing an sftp:// URL that contains a password (it would leak into shell "
                               "history and logs); use an SSH key (?key=/path, AGENT_SFTP_KEY_FILE or ssh-agent) "
                               "or set AGENT_SFTP_PASSWORD")
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise BackendError(f"unknown sftp:// option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
        try:
            port = url.port or 22
            connections = int(options.get("connections", 4))
            timeout = float(options.get("timeout", 30))
        except ValueError as exc:
            raise BackendError(f"invalid sftp:// URL: {exc}") from None
        if not url.hostname:
            raise BackendError("sftp:// URL needs a host: sftp://user@host[:port]/absolute/path")
        known_hosts = options.get("known_hosts") or os.environ.get(env.SFTP_KNOWN_HOSTS) or "~/.ssh/known_hosts"
        return cls(url.hostname, unquote(url.path), port=port,
                   username=unquote(url.username) if url.username else None,
                   key_file=options.get("key") or os.environ.get(env.SFTP_KEY_FILE) or None,
                   password=os.environ.get(env.SFTP_PASSWORD) or None,
                   passphrase=os.environ.get(env.SFTP_KEY_PASSPHRASE) or None,
                   known_hosts=known_hosts, connections=connections, timeout=timeout)

    @property
    def location(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{self.root or '/'}"

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> paramiko.SSHClient:
        if self._key_file is not None and not os.path.isfile(self._key_file):
            raise AuthError(f"{self.location}: SSH key file {self._key_file} does not exist")
        client = paramiko.SSHClient()
        try:
            if self._known_hosts.exists():
                client.load_system_host_keys(str(self._known_hosts))  # "system": never written back
            client.set_missing_host_key_policy(_RefuseUnknownHost(self._known_hosts, self.host, self.port))
            explicit_key = self._key_file is not None
            client.connect(self.host, port=self.port, username=self.username, key_filename=self._key_file,
                           password=self._password, passphrase=self._passphrase,
                           allow_agent=not explicit_key, look_for_keys=not explicit_key,
                           timeout=self._timeout, banner_timeout=self._timeout, auth_timeout=self._timeout,
                           channel_timeout=self._timeout)
            client.get_transport().set_keepalive(30)
            return client
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"WARNING: the SSH host key of {self.host}:{self.port} HAS CHANGED (now {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, expected {fingerprint(exc.expected_key)}). Someone may be intercepting "
                f"the connection. If the server was legitimately re-keyed, verify the new fingerprint and replace "
                f"the entry: ssh-keygen -R '[{self.host}]:{self.port}' -f {self._known_hosts}") from None
        except BaseException as exc:
            client.close()
            if isinstance(exc, BackendError) or not isinstance(exc, Exception):
                raise
            raise _translate(exc, self.location) from exc

    @contextmanager
    def _sftp(self, what: str) -> Iterator[paramiko.SFTPClient]:
        """Borrow a channel; anything raised inside comes out translated."""
        try:
            with self._pool.channel() as sftp:
                yield sftp
        except (BackendError, ValueError):
            raise
        except Exception as exc:
            raise _translate(exc, what) from exc

    def close(self) -> None:
        self._pool.close()

    # -- operations ---------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return f"{self.root}/{validate_key(key)}"

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        if retain_until is not None:
            raise Unsupported("sftp:// has no object lock; retain_until cannot be honoured")
        path = self._path(key)
        parent, name = posixpath.split(path)
        tmp = f"{parent}/{tempfiles.temp_name(name)}"
        payload = bytes(data)
        with self._sftp(key) as sftp:
            try:
                self._write_tmp(sftp, parent, tmp, payload, key)
                self._publish(sftp, tmp, path, mode, key)
            except BaseException as exc:
                if not _is_connection_error(exc):
                    try:
                        sftp.remove(tmp)
                    except Exception:  # noqa: BLE001 - the temp is hidden; the first error matters
                        pass
                raise

    def _write_tmp(self, sftp: paramiko.SFTPClient, parent: str, tmp: str, payload: bytes, key: str) -> None:
        try:
            f = sftp.open(tmp, "wbx")
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            _makedirs(sftp, parent)
            f = sftp.open(tmp, "wbx")
        try:
            with f:
                f.chmod(0o600)
                _write_checked(sftp, f, payload)
                if self.durable:
                    _fsync(sftp, f)
                size = f.stat().st_size
            if size != len(payload):
                raise BackendError(f"{key}: the server stored {size} of {len(payload)} bytes")
        except OSError as exc:
            if exc.errno is None and not _is_connection_error(exc):
                free = _statvfs_available(sftp, parent)
                if free is not None and free < len(payload):
                    raise QuotaExceeded(f"{key}: no space left on the server ({free} bytes free)") from exc
            raise

    def _publish(self, sftp: paramiko.SFTPClient, tmp: str, path: str, mode: PutMode, key: str) -> None:
        if mode is PutMode.CREATE:
            try:
                sftp.rename(tmp, path)  # OpenSSH: link(2) + unlink, fails if `path` exists
            except OSError as exc:
                if exc.errno is None:
                    try:
                        sftp.stat(path)
                    except OSError:
                        raise exc from None
                    raise AlreadyExists(key) from None
                raise
            return
        try:
            sftp.posix_rename(tmp, path)
        except OSError as exc:
            if "unsupported" in str(exc).lower():
                raise Unsupported("this SFTP server lacks posix-rename@openssh.com, so an atomic overwrite "
                                  "is impossible") from None
            raise

    def get(self, key, *, offset=0, length=None) -> bytes:
        path = self._path(key)
        with self._sftp(key) as sftp, sftp.open(path, "rb") as f:
            n = check_range(f.stat().st_size, offset, length)
            if n == 0:
                return b""
            if n <= _SMALL_READ:
                f.seek(offset)
                data = f.read(n)
            else:
                data = next(iter(f.readv([(offset, n)], max_concurrent_prefetch_requests=64)))
        if len(data) != n:
            raise TransientError(f"{key}: short read ({len(data)} of {n} bytes); the object changed while read")
        return data

    def head(self, key) -> ObjectInfo:
        path = self._path(key)
        with self._sftp(key) as sftp:
            st = sftp.stat(path)
        if not stat.S_ISREG(st.st_mode or 0):
            raise NotFound(key)
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # walk only the directory the prefix points into, and only subdirectories it can match
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        yield from self._walk(base, prefix)

    def _walk(self, rel_dir: str, prefix: str) -> Iterator[ObjectInfo]:
        directory = f"{self.root}/{rel_dir}" if rel_dir else (self.root or "/")
        try:
            with self._sftp(rel_dir or "/") as sftp:
                entries = sorted(sftp.listdir_attr(directory), key=lambda e: e.filename)
        except NotFound:
            return
        subdirs = []
        for entry in entries:
            if entry.filename.startswith("."):
                continue  # in-flight temporaries and anything else hidden
            key = f"{rel_dir}/{entry.filename}" if rel_dir else entry.filename
            if stat.S_ISDIR(entry.st_mode or 0):
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    subdirs.append(key)
            elif stat.S_ISREG(entry.st_mode or 0) and key.startswith(prefix):
                yield ObjectInfo(key, entry.st_size, datetime.fromtimestamp(entry.st_mtime, UTC))
        for sub in subdirs:
            yield from self._walk(sub, prefix)

    def delete(self, key) -> None:
        path = self._path(key)
        try:
            with self._sftp(key) as sftp:
                sftp.remove(path)
        except NotFound:
            return

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        """Temporaries of writes that never finished (killed, or cut off: a put that loses its
        connection cannot remove its own), anywhere under the root, aged by their mtime."""
        found: list[Leftover] = []
        pending = [""]
        now = time.time()
        while pending:
            rel_dir = pending.pop()
            directory = f"{self.root}/{rel_dir}" if rel_dir else (self.root or "/")
            try:
                with self._sftp(rel_dir or "/") as sftp:
                    entries = sftp.listdir_attr(directory)
            except NotFound:
                continue
            for entry in sorted(entries, key=lambda e: e.filename):
                rel = f"{rel_dir}/{entry.filename}" if rel_dir else entry.filename
                mode = entry.st_mode or 0
                if stat.S_ISDIR(mode) and not entry.filename.startswith("."):
                    pending.append(rel)
                elif stat.S_ISREG(mode) and tempfiles.is_temp(entry.filename):
                    item = tempfiles.leftover(rel, entry.st_size or 0, entry.st_mtime or 0, now)
                    if item.age >= older_than:
                        found.append(item)
        return found

    def remove_leftover(self, leftover: Leftover) -> None:
        rel = tempfiles.checked_path(leftover)
        try:
            with self._sftp(rel) as sftp:
                sftp.remove(f"{self.root}/{rel}")
        except NotFound:
            return
