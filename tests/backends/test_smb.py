"""SMB backend against a real Samba smbd on loopback (tests/servers/smbd.py).

Besides the conformance suite: signing and encryption, authentication, URL hygiene, hidden
temporaries, permissions, a full share and a server that dies. The share's create mask is
0600, which also proves overwrites work on files without an execute bit.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

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
from backends.smb import SMBBackend
from tests.backends.conformance import Conformance, cut_off_mid_write, plant_temp_file
from tests.servers.daemon import free_port
from tests.servers.smbd import SMBServer, started_smbd


@pytest.fixture
def smb_env(smbd_server, monkeypatch):
    monkeypatch.setenv("AGENT_SMB_PASSWORD", smbd_server.password)


@pytest.fixture
def sub() -> str:
    """A fresh directory name inside the share (created by the first put)."""
    return "/" + uuid.uuid4().hex


def _open(server: SMBServer, sub: str, **options) -> SMBBackend:
    return open_backend(server.url(sub, **options))


class TestSMBBackend(Conformance):
    large_object_size = 3 << 20

    @pytest.fixture
    def backend(self, smbd_server, sub, smb_env):
        be = _open(smbd_server, sub)
        yield be
        be.close()

    @pytest.fixture
    def leave_leftover(self, smbd_server, sub):
        return lambda key, data, age=0.0: plant_temp_file(smbd_server.share_dir / sub.strip("/"), key, data, age)


class TestSMBRealServer(Conformance):
    """The same suite against AGENT_TEST_SMB_URL (a fresh sub-directory per test)."""

    large_object_size = 3 << 20

    @pytest.fixture
    def backend(self):
        url = os.environ.get("AGENT_TEST_SMB_URL")
        if not url:
            pytest.skip("set AGENT_TEST_SMB_URL=smb://user@host/share/path (and AGENT_SMB_PASSWORD) "
                        "to run against a real server")
        parts = urlsplit(url)
        sub = parts._replace(path=parts.path.rstrip("/") + f"/agent-test-{uuid.uuid4().hex[:12]}")
        be = open_backend(urlunsplit(sub))
        yield be
        for info in list(be.list("")):
            be.delete(info.key)
        be.close()


def test_signed_and_encrypted_by_default(smbd_server, sub, smb_env):
    be = _open(smbd_server, sub)
    be.put("k", b"sealed")
    assert be.encrypted is True and be.signed is True
    off = _open(smbd_server, sub, encrypt="off")
    assert off.get("k") == b"sealed"
    assert off.encrypted is False and off.signed is True
    required = _open(smbd_server, sub, encrypt="required")
    assert required.get("k") == b"sealed" and required.encrypted is True
    for b in (be, off, required):
        b.close()


@pytest.fixture
def smb2_only_server():
    """A server limited to SMB 2.1, which has no encryption."""
    yield from started_smbd("  server max protocol = SMB2_10\n")


def test_encryption_auto_falls_back_required_refuses(smb2_only_server, monkeypatch):
    monkeypatch.setenv("AGENT_SMB_PASSWORD", smb2_only_server.password)
    auto = open_backend(smb2_only_server.url("/r"))
    auto.put("k", b"signed only")
    assert auto.encrypted is False and auto.signed is True
    auto.close()
    required = open_backend(smb2_only_server.url("/r", encrypt="required"))
    with pytest.raises(Unsupported, match="encryption"):
        required.get("k")


def test_wrong_password_is_auth_error_quickly(smbd_server, sub, monkeypatch):
    monkeypatch.setenv("AGENT_SMB_PASSWORD", smbd_server.password + "-wrong")
    be = _open(smbd_server, sub)
    start = time.monotonic()
    with pytest.raises(AuthError):
        be.put("k", b"v")
    assert time.monotonic() - start < 5
    assert not (smbd_server.share_dir / sub.strip("/")).exists()


def test_password_in_url_refused():
    with pytest.raises(BackendError, match="AGENT_SMB_PASSWORD") as info:
        open_backend("smb://alice:hunter2@127.0.0.1:1/share/repo")
    assert "hunter2" not in str(info.value)


def test_url_validation_and_location():
    with pytest.raises(BackendError, match="share"):
        open_backend("smb://alice@nas")
    with pytest.raises(BackendError, match="unknown smb:// option"):
        open_backend("smb://alice@nas/share?password=x")
    with pytest.raises(BackendError, match="encrypt"):
        open_backend("smb://alice@nas/share?encrypt=maybe")
    be = open_backend("smb://corp;alice@nas.example:4450/backups/host1/repo/")
    assert be.username == "corp\\alice"
    assert be.location == "smb://corp;alice@nas.example:4450/backups/host1/repo"
    assert be.capabilities.conditional_put and be.capabilities.atomic_overwrite
    assert not be.capabilities.object_lock
    with pytest.raises(Unsupported):
        be.put("x", b"x", retain_until=datetime(2100, 1, 1))


def test_temp_files_hidden_and_cleaned(smbd_server, sub, smb_env):
    be = _open(smbd_server, sub)
    repo = smbd_server.share_dir / sub.strip("/")
    be.put("data/whole", b"x")
    (repo / "data" / ".tmp-half-written.abc").write_bytes(b"partial")
    (repo / ".hidden-dir").mkdir()
    (repo / ".hidden-dir" / "inside").write_bytes(b"y")
    assert [i.key for i in be.list("data/")] == ["data/whole"]
    assert [i.key for i in be.list("")] == ["data/whole"]
    for mode in (PutMode.OVERWRITE, PutMode.CREATE):
        be.put(f"data/{mode.value}", b"z", mode=mode)
    be.put("data/overwrite", b"zz")
    with pytest.raises(AlreadyExists):
        be.put("data/create", b"again", mode=PutMode.CREATE)
    assert be.get("data/create") == b"z"
    leftovers = sorted(p.name for p in (repo / "data").iterdir() if p.name.startswith(".tmp-"))
    assert leftovers == [".tmp-half-written.abc"]


def test_create_race_across_connections(smbd_server, sub, smb_env):
    """Separate backends mean separate SMB connections, served by separate smbd processes."""
    backends = [_open(smbd_server, sub) for _ in range(4)]
    backends[0].put("seed", b"")
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
    assert sorted(outcome.values()) == ["lost"] * 3 + ["won"], outcome
    winner = next(n for n, r in outcome.items() if r == "won")
    assert backends[2].get("locks/one") == str(winner).encode()
    for be in backends:
        be.close()


def test_read_only_directory_is_permission_denied(smbd_server, sub, smb_env):
    be = _open(smbd_server, sub)
    be.put("ro/existing", b"x")
    ro = smbd_server.share_dir / sub.strip("/") / "ro"
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionDenied):
            be.put("ro/new", b"y")
        with pytest.raises(PermissionDenied):
            be.delete("ro/existing")
        with pytest.raises(PermissionDenied):
            be.put("ro/deeper/new", b"y")
        assert be.get("ro/existing") == b"x"
    finally:
        ro.chmod(0o700)


def test_missing_objects(smbd_server, sub, smb_env):
    be = _open(smbd_server, sub)
    assert list(be.list("")) == []
    with pytest.raises(NotFound):
        be.head("nothing")
    be.delete("nothing")
    be.put("dir/obj", b"x")
    with pytest.raises(NotFound):
        be.head("dir")


def test_wrong_share_is_a_clear_error(smbd_server, smb_env):
    be = open_backend(f"smb://{smbd_server.user}@127.0.0.1:{smbd_server.port}/no-such-share/x")
    with pytest.raises(BackendError, match="no such share"):
        be.put("k", b"v")


@pytest.fixture
def tiny_filesystem(smbd_server, sub):
    """A 1 MiB tmpfs inside the share, owned by the test user; skipped where mount is refused."""
    repo = smbd_server.share_dir / sub.strip("/")
    repo.mkdir()
    st = smbd_server.share_dir.stat()
    os.chown(repo, st.st_uid, st.st_gid)
    mountpoint = repo / "full"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=1m,mode=0700,uid={st.st_uid},gid={st.st_gid}",
                           "agent-test-full", str(mountpoint)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_share_is_quota_exceeded(smbd_server, sub, tiny_filesystem, smb_env):
    be = _open(smbd_server, sub)
    with pytest.raises(QuotaExceeded):
        be.put("full/big", os.urandom(2 << 20))
    assert list(tiny_filesystem.iterdir()) == []  # the partial temp was removed
    be.put("full/small", b"fits")
    assert be.get("full/small") == b"fits"


@pytest.fixture
def private_smbd():
    yield from started_smbd()


def test_server_killed_mid_session(private_smbd, monkeypatch):
    monkeypatch.setenv("AGENT_SMB_PASSWORD", private_smbd.password)
    be = open_backend(private_smbd.url("/repo"))
    be.put("k", b"v")
    private_smbd.stop(hard=True)  # the listener and the per-connection smbd: SIGKILL
    for call in (lambda: be.get("k"), lambda: be.put("k2", b"x"), lambda: list(be.list(""))):
        with pytest.raises(TransientError):
            call()
    private_smbd.start()  # same port, same passdb
    assert be.get("k") == b"v"
    be.put("k2", b"after")
    assert be.get("k2") == b"after"
    be.close()


def test_a_put_cut_off_mid_write_leaves_a_leftover_that_can_be_removed(private_smbd, monkeypatch):
    """A put whose server dies cannot remove its own temporary; the next session finds it."""
    monkeypatch.setenv("AGENT_SMB_PASSWORD", private_smbd.password)
    be = open_backend(private_smbd.url("/repo"))
    be.put("data/ab/kept", b"kept")
    directory = private_smbd.share_dir / "repo" / "data" / "ab"
    errors = cut_off_mid_write(be, directory, "big", lambda: private_smbd.stop(hard=True))
    assert len(errors) == 1, errors  # cut off (smbprotocol may call it a lack of credits: not transient)
    be.close()
    private_smbd.start()
    again = open_backend(private_smbd.url("/repo"))
    [left] = again.list_leftovers(0)
    assert left.name.startswith("data/ab/.tmp-big.") and 0 < left.size < 64 << 20
    assert [i.key for i in again.list("")] == ["data/ab/kept"]
    again.remove_leftover(left)
    assert again.list_leftovers(0) == []
    assert sorted(p.name for p in directory.iterdir()) == ["kept"]
    again.close()


def test_concurrent_reads_of_one_object(smbd_server, sub, smb_env):
    """Readers share the file (share_access rwd); a sharing violation would fail some of them."""
    be = _open(smbd_server, sub)
    payload = os.urandom(1 << 20)
    be.put("shared", payload)
    results: list[bool] = []

    def read() -> None:
        for _ in range(5):
            results.append(be.get("shared", offset=1000, length=50000) == payload[1000:51000])

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 20


def test_share_root_repository(smbd_server, smb_env):
    """A repository at the top of the share (no sub-path) lists and writes correctly."""
    be = open_backend(smbd_server.url(""))
    key = f"top{uuid.uuid4().hex[:8]}/obj"
    be.put(key, b"x")
    assert (smbd_server.share_dir / key).read_bytes() == b"x"
    assert [i.key for i in be.list(key.split("/")[0] + "/")] == [key]
    be.delete(key)


def test_nothing_listening_is_transient():
    """A refused connection is transient: the retry layer may try again."""
    be = SMBBackend("127.0.0.1", "share", port=free_port(), username="u", password="p", timeout=2)
    with pytest.raises(TransientError):
        be.head("k")
