"""A real Samba smbd on a free loopback port, as a session fixture.

Config, password database, locks and logs live in a temp dir; nothing under /etc/samba is
used. Signing is mandatory. Samba maps an SMB user onto a Unix account, so the client logs in
as an unprivileged test user (root would ignore file modes) whose password lives only in the
temp tdbsam. smbd runs in its own session: it signals its process group on some failures.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlencode

import pytest

from tests.servers.daemon import ensure_test_user, free_port, make_workdir, require_binaries, spawn, stop, wait_port

SMBD = "/usr/sbin/smbd"
APT_PACKAGES = "samba"
SHARE = "backup"


@dataclass
class SMBServer:
    workdir: Path
    port: int
    user: str
    password: str
    share_dir: Path         # the filesystem directory behind \\host\backup, owned by the test user
    extra_global: str = ""  # additional [global] lines, e.g. to disable encryption
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    share: str = SHARE

    @property
    def log(self) -> Path:
        return self.workdir / "smbd.stdout"

    def url(self, path: str = "", **options: str) -> str:
        query = ("?" + urlencode(options)) if options else ""
        return f"smb://{self.user}@{self.host}:{self.port}/{self.share}{path}{query}"

    def start(self) -> None:
        self.proc = spawn([SMBD, "--foreground", "--no-process-group", "--debug-stdout",
                           "-s", str(self.workdir / "smb.conf")], self.log)
        try:
            wait_port(self.port, self.proc, self.log)
        except BaseException:
            stop(self.proc, hard=True)
            raise

    def stop(self, *, hard: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc, hard=hard)


def build_smbd(workdir: Path, *, extra_global: str = "", port: int | None = None) -> SMBServer:
    """Write config and passdb for a server (not started); `start()` may follow `stop()`."""
    require_binaries([SMBD, "smbpasswd"], APT_PACKAGES)
    account = ensure_test_user()
    password = secrets.token_urlsafe(12)
    port = port or free_port()
    for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc"):
        (workdir / sub).mkdir()
    share_dir = workdir / "share"
    share_dir.mkdir(mode=0o700)
    shutil.chown(share_dir, account.pw_uid, account.pw_gid)
    conf = workdir / "smb.conf"
    conf.write_text(f"""\
[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  server min protocol = SMB2_10
  server signing = mandatory
  passdb backend = tdbsam:{workdir}/private/passdb.tdb
  private dir = {workdir}/private
  lock directory = {workdir}/lock
  state directory = {workdir}/state
  cache directory = {workdir}/cache
  pid directory = {workdir}/pid
  ncalrpc dir = {workdir}/ncalrpc
  log file = {workdir}/log.smbd
  log level = 1
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  map to guest = never
{extra_global}
[{SHARE}]
  path = {share_dir}
  read only = no
  valid users = {account.pw_name}
  create mask = 0600
  directory mask = 0700
""")
    subprocess.run(["smbpasswd", "-c", str(conf), "-s", "-a", account.pw_name],
                   input=f"{password}\n{password}\n", text=True, check=True, capture_output=True)
    return SMBServer(workdir=workdir, port=port, user=account.pw_name, password=password,
                     share_dir=share_dir, extra_global=extra_global)


def started_smbd(extra_global: str = "") -> Iterator[SMBServer]:
    """A private server for one test (e.g. one the test kills); stopped and removed afterwards."""
    require_binaries([SMBD], APT_PACKAGES)
    workdir = make_workdir("agent-smbd-")
    try:
        server = build_smbd(workdir, extra_global=extra_global)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def smbd_server() -> Iterator[SMBServer]:
    yield from started_smbd()
