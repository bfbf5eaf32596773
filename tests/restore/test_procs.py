"""Restores whose chunks are opened and written by worker processes (agent.restore.procs): the
same bytes and accounting as with threads, errors raised by the parent, and no worker left behind
(a dead worker is an error; a killed restore takes its workers with it)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from agent.backup.run import run_backup
from agent.errors import AgentError, CorruptObject
from agent.progress import Advanced
from agent.repo import layout
from agent.restore.fetch import plan_reads
from agent.restore.options import RestoreOptions
from agent.restore.procs import usable
from agent.restore.run import run_restore

from .conftest import MiB

pytestmark = pytest.mark.skipif(not usable(), reason="needs fork and two cores")


def _children(pid: int | None = None) -> list[int]:
    """The process's children (a test's own, and the servers other tests of this session started)."""
    pid = pid or os.getpid()
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


def _image(tmp_path: Path) -> bytes:
    """Data at unaligned places, zeros between, a region repeated (one chunk at two offsets)."""
    rng = random.Random(7)
    img = bytearray(40 * MiB)
    for at, n in ((0, 9 * MiB + 123), (11 * MiB + 7, 5 * MiB), (20 * MiB + 4000, 3 * MiB + 17)):
        img[at:at + n] = rng.randbytes(n)
    img[30 * MiB:33 * MiB] = img[1 * MiB:4 * MiB]
    (tmp_path / "disk.img").write_bytes(bytes(img))
    return bytes(img)


@pytest.fixture
def backed_up(repo, tmp_path):
    img = _image(tmp_path)
    run_backup(repo, str(tmp_path / "disk.img"))
    return img, repo.list_snapshots()[0]


def test_workers_and_threads_restore_the_same_bytes(repo, tmp_path, backed_up):
    img, snap = backed_up
    before = set(_children())
    a = run_restore(repo, snap, str(tmp_path / "a.img"), RestoreOptions(processes="always"))
    b = run_restore(repo, snap, str(tmp_path / "b.img"), RestoreOptions(processes="never"))
    assert a.processes >= 2 and b.processes == 0
    assert (tmp_path / "a.img").read_bytes() == img == (tmp_path / "b.img").read_bytes()
    assert (a.written_bytes, a.zero_bytes) == (b.written_bytes, b.zero_bytes)
    assert set(_children()) == before  # every worker was reaped


def test_a_window_is_restored_by_workers(repo, tmp_path, backed_up):
    img, snap = backed_up
    window = (5 * MiB + 3, 20 * MiB)
    res = run_restore(repo, snap, str(tmp_path / "part.img"), RestoreOptions(processes="always", window=window))
    assert res.processes >= 2
    assert (tmp_path / "part.img").read_bytes() == img[window[0]:window[0] + window[1]]


def _damage_a_chunk(repo, snap, tmp_path: Path) -> list[tuple[int, int]]:
    """Flip one byte inside a stored data chunk; the image ranges it restores to."""
    plan = plan_reads(repo, snap, False, (0, snap.size), lambda e: None)
    pack, blobs = sorted(plan.by_pack.items())[len(plan.by_pack) // 2]
    b = blobs[0]
    path = tmp_path / "repo" / layout.pack(pack)
    data = bytearray(path.read_bytes())
    data[b.offset + b.length // 2] ^= 0x40
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    return sorted((t, b.raw) for t in b.targets)


def test_a_damaged_chunk_in_a_worker_is_raised_by_the_parent(repo, tmp_path, backed_up):
    img, snap = backed_up
    before = set(_children())
    ranges = _damage_a_chunk(repo, snap, tmp_path)
    at, n = ranges[0]
    with pytest.raises(CorruptObject) as raised:
        run_restore(repo, snap, str(tmp_path / "a.img"), RestoreOptions(processes="always"))
    assert f"image bytes {at}..{at + n} cannot be restored" in str(raised.value)
    assert "check --read-data" in raised.value.hint
    assert set(_children()) == before
    res = run_restore(repo, snap, str(tmp_path / "b.img"), RestoreOptions(processes="always", ignore_errors=True))
    threads = run_restore(repo, snap, str(tmp_path / "c.img"), RestoreOptions(processes="never", ignore_errors=True))
    assert res.damaged == threads.damaged == ranges
    want = bytearray(img)
    for at, n in ranges:  # zeros where the damaged chunk goes, every other byte restored
        want[at:at + n] = bytes(n)
    assert (tmp_path / "b.img").read_bytes() == want == (tmp_path / "c.img").read_bytes()


def test_a_worker_that_dies_is_an_error(repo, tmp_path, backed_up):
    _, snap = backed_up
    before = set(_children())
    killed: list[int] = []

    def listener(event: object) -> None:
        workers = sorted(set(_children()) - before)
        if isinstance(event, Advanced) and not killed and workers:
            killed.append(workers[0])
            os.kill(workers[0], signal.SIGKILL)

    with pytest.raises(AgentError, match=r"restore worker process \d+ ended unexpectedly") as raised:
        run_restore(repo, snap, str(tmp_path / "a.img"), RestoreOptions(processes="always"), listener)
    assert str(killed[0]) in str(raised.value)
    assert set(_children()) == before


def test_workers_die_with_a_killed_restore(cli, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(64 * MiB))
    cli("init")
    cli("backup", str(img))
    proc = cli.popen("restore", "latest", "--to", str(tmp_path / "out.img"), "--limit-download", "8MiB/s")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_children(proc.pid)) < 2 and proc.poll() is None:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert len(workers) >= 2, "the restore did not start its workers"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{w}") and _state(w) != "Z" for w in workers):
        time.sleep(0.05)
    assert all(not os.path.exists(f"/proc/{w}") or _state(w) == "Z" for w in workers)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_processes_are_used_from_a_local_repository_by_default(repo, tmp_path, backed_up):
    _, snap = backed_up
    res = run_restore(repo, snap, str(tmp_path / "a.img"))
    assert res.processes >= 2
