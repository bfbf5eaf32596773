"""Backups that read and cut two or more stretches of a disk at once (agent.backup.reader)."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backup.reader import split
from agent.backup.run import BackupOptions, run_backup
from agent.errors import SourceError
from agent.maintenance.check import run_check
from agent.progress import Advanced
from agent.restore.run import run_restore

MiB = 1 << 20


@given(size=st.integers(0, 1 << 40), n=st.integers(1, 4), minimum=st.integers(1, 1 << 30))
def test_stretches_cover_the_source_once_at_aligned_points_that_depend_only_on_its_size(size, n, minimum):
    parts = split(size, n, minimum)
    assert parts == split(size, n, minimum)
    assert [lo for lo, _ in parts[1:]] == [hi for _, hi in parts[:-1]]  # contiguous
    if size:
        assert parts[0][0] == 0 and parts[-1][1] == size
    assert all(hi > lo for lo, hi in parts)
    assert all(lo % MiB == 0 for lo, _ in parts)
    assert len(parts) <= (n if size >= n * minimum else 1)


def _opts(n: int) -> BackupOptions:
    return BackupOptions(stretches=n, stretch_min=4 * MiB)


def _write(path, layout: str) -> None:
    """24 MiB images whose data sits across, before, after or around the split points."""
    with open(path, "wb") as f:
        if layout == "full":
            f.write(os.urandom(24 * MiB))
        elif layout == "first-half":
            f.write(os.urandom(9 * MiB))
        elif layout == "second-half":
            f.seek(14 * MiB)
            f.write(os.urandom(5 * MiB))
        elif layout == "zeros-across-split":
            f.write(os.urandom(10 * MiB) + bytes(5 * MiB) + os.urandom(3 * MiB))
        f.truncate(24 * MiB)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("layout", ["full", "first-half", "second-half", "zeros-across-split"])
def test_backup_in_stretches_restores_byte_for_byte_and_dedups_the_next_night(repo, tmp_path, layout, n):
    img = tmp_path / "disk.img"
    _write(img, layout)
    run_backup(repo, str(img), _opts(n))
    again = run_backup(repo, str(img), _opts(n))
    assert again.new_bytes == 0
    a, b = repo.list_snapshots()
    assert a.chunk_list == b.chunk_list and a.digest == b.digest
    out = tmp_path / "out.img"
    run_restore(repo, b, str(out))
    assert out.read_bytes() == img.read_bytes()
    if layout != "full":
        assert os.stat(out).st_blocks * 512 < 20 * MiB  # holes stay holes


def test_stretches_reuse_a_front_to_back_parent_and_keep_only_changes(repo, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(24 * MiB))
    run_backup(repo, str(img), _opts(1))  # a parent cut in one pass, as older versions did
    with open(img, "r+b") as f:
        for off in (3 * MiB, 17 * MiB):  # one change in each half
            f.seek(off)
            f.write(b"changed!")
    night2 = run_backup(repo, str(img), _opts(2))
    # the two changed chunks, and around the split the chunks the single pass did not cut there
    assert 0 < night2.new_bytes <= 4 * 2 * MiB
    night3 = run_backup(repo, str(img), _opts(2))
    assert night3.new_bytes == 0
    for snap in repo.list_snapshots()[1:]:
        out = tmp_path / f"{snap.id}.img"
        run_restore(repo, snap, str(out))
        assert out.read_bytes() == img.read_bytes()


def test_a_stop_request_mid_run_leaves_no_snapshot_and_the_next_run_completes(repo, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(40 * MiB))
    stop = threading.Event()

    def stop_on_progress(ev):
        if isinstance(ev, Advanced) and ev.done_bytes >= 8 * MiB:
            stop.set()

    opts = _opts(2)
    opts.stop = stop
    res = run_backup(repo, str(img), opts, listener=stop_on_progress)
    assert not res.complete and repo.list_snapshots() == []
    again = run_backup(repo, str(img), _opts(2))
    assert again.complete
    out = tmp_path / "out.img"
    run_restore(repo, repo.list_snapshots()[0], str(out))
    assert out.read_bytes() == img.read_bytes()


def test_a_source_that_shrinks_under_the_second_stretch_fails_cleanly(repo, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(40 * MiB))

    def truncate_on_progress(ev):
        if isinstance(ev, Advanced) and img.stat().st_size > 30 * MiB:
            os.truncate(img, 30 * MiB)  # inside the second half

    with pytest.raises(SourceError, match="no snapshot"):
        run_backup(repo, str(img), _opts(2), listener=truncate_on_progress)
    assert repo.list_snapshots() == []
    assert run_check(repo).ok
