"""SFTP backend against a real OpenSSH sshd on loopback (tests/servers/sshd.py).

Besides the conformance suite: host-key checking (first use and change), authentication,
URL hygiene, hidden temporaries, permissions, a full disk and a server that dies.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import paramiko
import pytest

from backends.base import PutMode
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
from backends.registry import open_backend
from backends.sftp import HostKeyError, SFTPBackend
from tests.backends.conformance import Conformance, cut_off_mid_write, plant_temp_file
from tests.servers.sshd import SSHServer, started_sshd

_ENV = ("SSH_AUTH_SOCK", "AGENT_SFTP_PASSWORD", "AGENT_SFTP_KEY_FILE", "AGENT_SFTP_KNOWN_HOSTS",
        "AGENT_SFTP_KEY_PASSPHRASE")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No ssh-agent, no ~/.ssh keys, no AGENT_SFTP_* from the caller: only what a test passes."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def repo_dir(sshd_server: SSHServer) -> Path:
    """A fresh, not yet existing repository directory owned by nobody yet (put creates it)."""
    return sshd_server.data_dir / uuid.uuid4().hex


def _chown_like(path: Path, model: Path) -> None:
    st = model.stat()
    os.chown(path, st.st_uid, st.st_gid)


class TestSFTPBackend(Conformance):
    large_object_size = 3 << 20

    @pytest.fixture
    def backend(self, sshd_server, repo_dir, clean_env):
        be = open_backend(sshd_server.url(repo_dir))
        yield be
        be.close()

    @pytest.fixture
    def leave_leftover(self, repo_dir):
        return lambda key, data, age=0.0: plant_temp_file(repo_dir, key, data, age)


class TestSFTPRealServer(Conformance):
    """The same suite against AGENT_TEST_SFTP_URL (a fresh sub-directory per test)."""

    large_object_size = 3 << 20

    @pytest.fixture
    def backend(self):
        url = os.environ.get("AGENT_TEST_SFTP_URL")
        if not url:
            pytest.skip("set AGENT_TEST_SFTP_URL=sftp://user@host/path to run against a real server")
        parts = urlsplit(url)
        sub = parts._replace(path=parts.path.rstrip("/") + f"/agent-test-{uuid.uuid4().hex[:12]}")
        be = open_backend(urlunsplit(sub))
        yield be
        for info in list(be.list("")):
            be.delete(info.key)
        be.close()


def _server_fingerprint(server: SSHServer) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(server.workdir / "host_key.pub")],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def test_unknown_host_key_refused_with_fingerprint(sshd_server, repo_dir, tmp_path, clean_env):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    be = open_backend(sshd_server.url(repo_dir, known_hosts=str(empty)))
    with pytest.raises(HostKeyError) as info:
        be.put("x", b"never sent")
    message = str(info.value)
    assert _server_fingerprint(sshd_server) in message
    assert f"ssh-keyscan -p {sshd_server.port}" in message
    assert not repo_dir.exists()
    # a known_hosts file that does not exist at all is the same first-use case
    missing = open_backend(sshd_server.url(repo_dir, known_hosts=str(tmp_path / "absent")))
    with pytest.raises(HostKeyError, match="unknown SSH host key"):
        missing.head("x")


def test_accepting_the_key_as_the_message_says_works(sshd_server, repo_dir, tmp_path, clean_env):
    known = tmp_path / "known_hosts"
    be = open_backend(sshd_server.url(repo_dir, known_hosts=str(known)))
    with pytest.raises(HostKeyError) as info:
        be.head("x")
    command = str(info.value).split("accept it with: ", 1)[1]
    subprocess.run(command, shell=True, check=True, capture_output=True)
    be.put("x", b"ok")
    assert be.get("x") == b"ok"


def test_changed_host_key_fails_loudly(sshd_server, repo_dir, tmp_path, clean_env):
    impostor = (sshd_server.workdir / "other_key.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {' '.join(impostor)}\n")
    be = open_backend(sshd_server.url(repo_dir, known_hosts=str(known)))
    with pytest.raises(HostKeyError, match="HAS CHANGED") as info:
        be.put("x", b"never sent")
    assert _server_fingerprint(sshd_server) in str(info.value)
    assert not repo_dir.exists()


def test_wrong_key_is_auth_error_quickly(sshd_server, repo_dir, clean_env):
    be = open_backend(sshd_server.url(repo_dir, key=str(sshd_server.other_key_file)))
    start = time.monotonic()
    with pytest.raises(AuthError) as info:
        be.head("x")
    assert not isinstance(info.value, HostKeyError)
    assert time.monotonic() - start < 5


def test_password_from_environment(sshd_server, repo_dir, monkeypatch, clean_env):
    url = sshd_server.url(repo_dir).split("?")[0] + f"?known_hosts={sshd_server.known_hosts}"
    monkeypatch.setenv("AGENT_SFTP_PASSWORD", sshd_server.password)
    be = open_backend(url)
    be.put("k", b"by password")
    assert be.get("k") == b"by password"
    be.close()
    monkeypatch.setenv("AGENT_SFTP_PASSWORD", sshd_server.password + "-wrong")
    start = time.monotonic()
    with pytest.raises(AuthError):
        open_backend(url).get("k")
    assert time.monotonic() - start < 10


def test_key_file_from_environment(sshd_server, repo_dir, monkeypatch, clean_env):
    monkeypatch.setenv("AGENT_SFTP_KEY_FILE", str(sshd_server.key_file))
    monkeypatch.setenv("AGENT_SFTP_KNOWN_HOSTS", str(sshd_server.known_hosts))
    be = open_backend(f"sftp://{sshd_server.user}@127.0.0.1:{sshd_server.port}{repo_dir}")
    be.put("k", b"v")
    assert [i.key for i in be.list("")] == ["k"]


def test_password_in_url_refused():
    with pytest.raises(BackendError, match="password") as info:
        open_backend("sftp://alice:hunter2@127.0.0.1:1/srv/repo")
    assert "hunter2" not in str(info.value)
    with pytest.raises(BackendError, match="password"):
        open_backend("sftp://alice:@127.0.0.1:1/srv/repo")


def test_url_validation_and_location():
    with pytest.raises(BackendError, match="unknown sftp:// option"):
        open_backend("sftp://alice@host/srv/repo?keyfile=/x")
    with pytest.raises(BackendError, match="absolute"):
        open_backend("sftp://alice@host")
    be = open_backend("sftp://alice@nas.example:2222/srv/repo/?key=/secret/id_ed25519&connections=2")
    assert be.location == "sftp://alice@nas.example:2222/srv/repo"
    assert be.capabilities.max_connections == 2
    assert be.capabilities.conditional_put and be.capabilities.atomic_overwrite
    assert not be.capabilities.object_lock
    with pytest.raises(Unsupported):
        be.put("x", b"x", retain_until=datetime(2100, 1, 1))
    missing_key = open_backend("sftp://alice@127.0.0.1:1/srv/repo?key=/nonexistent/id_ed25519")
    with pytest.raises(AuthError, match="does not exist"):
        missing_key.head("x")


def test_temp_files_hidden_and_cleaned(sshd_server, repo_dir, clean_env):
    be = open_backend(sshd_server.url(repo_dir))
    be.put("data/whole", b"x")
    (repo_dir / "data" / ".tmp-half-written.abc").write_bytes(b"partial")
    (repo_dir / ".hidden-dir").mkdir()
    (repo_dir / ".hidden-dir" / "inside").write_bytes(b"y")
    assert [i.key for i in be.list("data/")] == ["data/whole"]
    assert [i.key for i in be.list("")] == ["data/whole"]
    for mode in (PutMode.OVERWRITE, PutMode.CREATE):
        be.put(f"data/{mode.value}", b"z", mode=mode)
    with pytest.raises(AlreadyExists):
        be.put("data/create", b"again", mode=PutMode.CREATE)
    leftovers = sorted(p.name for p in (repo_dir / "data").iterdir() if p.name.startswith(".tmp-"))
    assert leftovers == [".tmp-half-written.abc"]
    assert os.stat(repo_dir / "data" / "whole").st_mode & 0o077 == 0


def test_server_rename_semantics_behind_create_and_overwrite(sshd_server, repo_dir, clean_env):
    """What the backend relies on: OpenSSH's plain rename refuses an existing target,
    posix-rename replaces it."""
    be = open_backend(sshd_server.url(repo_dir))
    be.put("a", b"A")
    be.put("b", b"B")
    client = paramiko.SSHClient()
    client.load_system_host_keys(str(sshd_server.known_hosts))
    client.connect("127.0.0.1", sshd_server.port, sshd_server.user, key_filename=str(sshd_server.key_file),
                   allow_agent=False, look_for_keys=False)
    try:
        sftp = client.open_sftp()
        with pytest.raises(IOError):
            sftp.rename(f"{repo_dir}/a", f"{repo_dir}/b")
        assert be.get("b") == b"B" and be.get("a") == b"A"
        sftp.posix_rename(f"{repo_dir}/a", f"{repo_dir}/b")
        assert be.get("b") == b"A"
        with pytest.raises(NotFound):
            be.head("a")
    finally:
        client.close()


def test_create_race_across_connections(sshd_server, repo_dir, clean_env):
    """Separate backends mean separate SSH connections and sftp-server processes."""
    backends = [open_backend(sshd_server.url(repo_dir)) for _ in range(4)]
    backends[0].put("seed", b"")  # creates the directory
    barrier = threading.Barrier(len(backends))
    outcome: dict[int, str] = {}

    def race(n: int) -> None:
        barrier.wait()
        try:
            backends[n].put("locks/one", str(n).encode(), mode=PutMode.CREATE)
            outcome[n] = "won"
        except AlreadyExists:
            outcome[n] = "lost"
        except BaseException as exc:
            outcome[n] = repr(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(backends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in outcome.items() if r == "won"]
    assert sorted(outcome.values()) == ["lost"] * 3 + ["won"], outcome
    assert backends[1].get("locks/one") == str(winners[0]).encode()
    for be in backends:
        be.close()


def test_read_only_directory_is_permission_denied(sshd_server, repo_dir, clean_env):
    be = open_backend(sshd_server.url(repo_dir))
    be.put("ro/existing", b"x")
    (repo_dir / "ro").chmod(0o500)
    try:
        with pytest.raises(PermissionDenied):
            be.put("ro/new", b"y")
        with pytest.raises(PermissionDenied):
            be.delete("ro/existing")
        with pytest.raises(PermissionDenied):
            be.put("ro/deeper/new", b"y")
        assert be.get("ro/existing") == b"x"  # reads still work, the channel is still usable
    finally:
        (repo_dir / "ro").chmod(0o700)


def test_missing_objects(sshd_server, repo_dir, clean_env):
    be = open_backend(sshd_server.url(repo_dir))
    assert list(be.list("")) == []  # the repository directory does not exist yet
    with pytest.raises(NotFound):
        be.head("nothing")
    be.delete("nothing")
    be.put("dir/obj", b"x")
    with pytest.raises(NotFound):
        be.head("dir")  # a directory is not an object


@pytest.fixture
def tiny_filesystem(sshd_server, repo_dir):
    """A 1 MiB tmpfs inside the repository, owned by the test user; skipped where mount is refused."""
    repo_dir.mkdir()
    _chown_like(repo_dir, sshd_server.data_dir)
    mountpoint = repo_dir / "full"
    mountpoint.mkdir()
    st = sshd_server.data_dir.stat()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=1m,mode=0700,uid={st.st_uid},gid={st.st_gid}",
                           "agent-test-full", str(mountpoint)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_disk_is_quota_exceeded(sshd_server, repo_dir, tiny_filesystem, clean_env):
    be = open_backend(sshd_server.url(repo_dir))
    with pytest.raises(QuotaExceeded):
        be.put("full/big", os.urandom(2 << 20))
    assert [p.name for p in tiny_filesystem.iterdir()] == []  # the partial temp was removed
    be.put("full/small", b"fits")
    assert be.get("full/small") == b"fits"


def test_dropped_connection_reconnects(sshd_server, repo_dir, clean_env):
    be = open_backend(sshd_server.url(repo_dir))
    be.put("k", b"before")
    sshd_server.kill_sessions()
    try:  # the first call may still meet the dead transport
        be.get("k")
    except TransientError:
        pass
    assert be.get("k") == b"before"
    be.put("k2", b"after")
    assert be.get("k2") == b"after"


@pytest.fixture
def private_sshd():
    yield from started_sshd()


def test_server_killed_mid_session(private_sshd, clean_env):
    repo = private_sshd.data_dir / "repo"
    be = open_backend(private_sshd.url(repo))
    be.put("k", b"v")
    private_sshd.stop(hard=True)  # listener and live sessions: SIGKILL
    for call in (lambda: be.get("k"), lambda: be.put("k2", b"x"), lambda: list(be.list(""))):
        with pytest.raises(TransientError):
            call()
    private_sshd.start()  # same port, same host key
    assert be.get("k") == b"v"


def test_constructor_accepts_paths(sshd_server, repo_dir, clean_env):
    be = SFTPBackend("127.0.0.1", str(repo_dir), port=sshd_server.port, username=sshd_server.user,
                     key_file=str(sshd_server.key_file), known_hosts=sshd_server.known_hosts, connections=1)
    # one channel shared by several threads still works (each waits for it)
    threads = [threading.Thread(target=be.put, args=(f"t/{n}", b"x")) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i.key for i in be.list("t/")) == [f"t/{n}" for n in range(4)]


def test_a_put_cut_off_mid_write_leaves_a_leftover_that_can_be_removed(sshd_server, repo_dir, clean_env):
    """A put whose connection dies cannot remove its own temporary; the next session finds it."""
    be = open_backend(sshd_server.url(repo_dir))
    be.put("data/ab/kept", b"kept")
    errors = cut_off_mid_write(be, repo_dir / "data" / "ab", "big", sshd_server.kill_sessions)
    assert len(errors) == 1 and isinstance(errors[0], TransientError), errors
    be.close()
    with open_backend(sshd_server.url(repo_dir)) as again:
        [left] = again.list_leftovers(0)
        assert left.name.startswith("data/ab/.tmp-big.") and 0 < left.size < 64 << 20
        assert [i.key for i in again.list("")] == ["data/ab/kept"]
        again.remove_leftover(left)
        assert again.list_leftovers(0) == []
        assert sorted(p.name for p in (repo_dir / "data" / "ab").iterdir()) == ["kept"]


def test_a_channel_closed_under_a_write_is_a_transient_error():
    """paramiko raises a bare OSError("Socket is closed") from Channel.send when the session dies
    (the cut-off test above hits it when the kill lands between two writes): the retry layer must see
    a connection problem, not a permanent failure."""
    from backends.errors import TransientError
    from backends.sftp import _translate

    err = _translate(OSError("Socket is closed"), "data/ab/big")
    assert isinstance(err, TransientError), err
    assert not isinstance(_translate(OSError("something else"), "k"), TransientError)
