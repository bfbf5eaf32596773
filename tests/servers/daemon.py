"""Process helpers for the sshd and smbd fixtures (and anything else that needs them).

Servers run in their own session (so a signal they send to their group cannot hit pytest) and
with PR_SET_PDEATHSIG (so a killed pytest does not leave them running). They are stopped by
PID, together with the per-connection children they forked, never by name.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def require_binaries(binaries: list[str], apt_packages: str) -> None:
    """Skip (without starting anything) when a server binary is not installed."""
    missing = [b for b in binaries if not (os.path.isabs(b) and os.access(b, os.X_OK)) and not shutil.which(b)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; run: "
                    f"apt-get install -y --no-install-recommends {apt_packages}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], log_path: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server in its own session, dying with this process."""
    full_env = None if env is None else {**os.environ, **env}
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env, start_new_session=True, preexec_fn=_die_with_parent)
    finally:
        if log_path:
            log.close()


def wait_port(port: int, proc: subprocess.Popen, log_path: Path | None = None, timeout: float = 15.0) -> None:
    """Block until the server accepts TCP connections; fail with its log if it exits."""
    def log() -> str:
        return log_path.read_text(errors="replace") if log_path and log_path.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{log()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{proc.args[0]} did not listen on port {port}:\n{log()}")


def descendants(pid: int) -> list[int]:
    """PIDs of all live descendants (sshd's per-connection children call setsid, so a
    process-group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop(proc: subprocess.Popen, *, hard: bool = False) -> None:
    """Stop a server and the children it forked (SIGKILL with hard=True, to simulate a crash)."""
    sig = signal.SIGKILL if hard else signal.SIGTERM
    tree = descendants(proc.pid)
    _signal([proc.pid], sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _signal(tree, sig)


def kill_children(proc: subprocess.Popen) -> None:
    """SIGKILL what the server forked (live sessions), leaving the listener up."""
    _signal(descendants(proc.pid), signal.SIGKILL)


TEST_USER = "agentnastest"


def ensure_test_user() -> pwd.struct_passwd:
    """An unprivileged account for sshd/smbd to map the test client onto.

    Root ignores file modes, so a read-only directory cannot be tested as root; a dedicated
    user owning only the repository directory is also the setup the docs recommend.
    """
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", TEST_USER], check=True, capture_output=True)
    return pwd.getpwnam(TEST_USER)


def make_workdir(prefix: str) -> Path:
    """A dir under /tmp that the unprivileged test user can traverse (0711); pytest's own
    tmp dirs sit in a 0700 root-only parent."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path
