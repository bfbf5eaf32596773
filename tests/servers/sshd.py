"""A real OpenSSH sshd on a free loopback port, as a session fixture.

Nothing under /etc/ssh is touched: config, host key, client keys and authorized_keys live in a
temp dir. The client logs in as an unprivileged test user (root would ignore file modes), by
key or by password. `StrictModes no` because the temp dir sits under the world-writable /tmp;
`UsePAM no` because there is no PAM session setup on this machine; the absolute sshd path is
required for its re-exec.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, urlencode

import pytest

from tests.servers.daemon import (
    ensure_test_user,
    free_port,
    kill_children,
    make_workdir,
    require_binaries,
    spawn,
    stop,
    wait_port,
)

SSHD = "/usr/sbin/sshd"
APT_PACKAGES = "openssh-server"


@dataclass
class SSHServer:
    workdir: Path
    port: int
    user: str
    password: str
    key_file: Path          # accepted client key
    other_key_file: Path    # a valid key the server does not know
    host_public_key: str    # "ssh-ed25519 AAAA..."
    known_hosts: Path       # a known_hosts file that trusts this server
    data_dir: Path          # owned by the test user; repositories go below it
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"

    @property
    def log(self) -> Path:
        return self.workdir / "sshd.log"

    def url(self, path: str | Path, **options: str) -> str:
        query = urlencode({"key": str(self.key_file), "known_hosts": str(self.known_hosts), **options})
        return f"sftp://{self.user}@{self.host}:{self.port}{quote(str(path))}?{query}"

    def start(self) -> None:
        self.proc = spawn([SSHD, "-D", "-e", "-f", str(self.workdir / "sshd_config")], self.log)
        try:
            wait_port(self.port, self.proc, self.log)
        except BaseException:
            stop(self.proc, hard=True)
            raise

    def stop(self, *, hard: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc, hard=hard)

    def kill_sessions(self) -> None:
        """Drop every live SSH connection (their sshd children die), keeping the listener."""
        if self.proc is not None:
            kill_children(self.proc)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _set_password(user: str, password: str) -> None:
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True, capture_output=True)


def build_sshd(workdir: Path, port: int | None = None) -> SSHServer:
    """Generate keys and config for a server (not started); `start()` may be called again
    after `stop()` to simulate a restart with the same identity and port."""
    require_binaries([SSHD, "ssh-keygen", "chpasswd"], APT_PACKAGES)
    account = ensure_test_user()
    password = secrets.token_urlsafe(12)
    _set_password(account.pw_name, password)  # also unlocks the account, which sshd requires without PAM
    port = port or free_port()
    host_public_key = _keygen(workdir / "host_key")
    client_public = _keygen(workdir / "client_key")
    _keygen(workdir / "other_key")
    (workdir / "authorized_keys").write_text(client_public + "\n")
    for name in ("client_key", "other_key", "authorized_keys"):
        (workdir / name).chmod(0o644)  # read by the test process and by sshd as the test user
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public_key}\n")
    data_dir = workdir / "data"
    data_dir.mkdir(mode=0o700)
    shutil.chown(data_dir, account.pw_uid, account.pw_gid)
    (workdir / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {workdir}/host_key
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {workdir}/authorized_keys
AllowUsers {account.pw_name}
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes no
MaxStartups 64
MaxSessions 64
Subsystem sftp internal-sftp
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # the privilege-separation dir sshd insists on
    subprocess.run([SSHD, "-t", "-f", str(workdir / "sshd_config")], check=True, capture_output=True)
    return SSHServer(workdir=workdir, port=port, user=account.pw_name, password=password,
                     key_file=workdir / "client_key", other_key_file=workdir / "other_key",
                     host_public_key=host_public_key, known_hosts=known_hosts, data_dir=data_dir)


def started_sshd() -> Iterator[SSHServer]:
    """A private server for one test (e.g. one the test kills); stopped and removed afterwards."""
    require_binaries([SSHD], APT_PACKAGES)
    workdir = make_workdir("agent-sshd-")
    try:
        server = build_sshd(workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SSHServer]:
    yield from started_sshd()
