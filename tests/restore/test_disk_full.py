"""A restore that runs out of space on a real (small, loop-mounted ext4) filesystem: a typed error
that says so, and no full-size partial image left behind, unless the file was there before.

Needs root, mke2fs and loop mounts; skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """An 8 MiB ext4 filesystem, mounted: room for about 6 MiB of data."""
    if os.geteuid() != 0 or not shutil.which("mke2fs"):
        pytest.skip("needs root and mke2fs")
    backing, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    made = subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(backing), "8M"], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mke2fs failed: {made.stderr.strip()}")
    mounted = subprocess.run(["mount", "-o", "loop", str(backing), str(mnt)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _backup_of_random_data(cli, tmp_path, mib: int) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(mib << 20))  # incompressible and no zeros: every byte needs a block
    cli("init")
    cli("backup", str(img))


def test_a_restore_that_fills_the_disk_removes_the_partial_image_it_created(cli, tmp_path, small_fs):
    _backup_of_random_data(cli, tmp_path, 16)
    target = small_fs / "restored.img"
    res = cli("restore", "latest", "--to", str(target), check=False)
    assert res.code == 16, res
    assert "no space left" in res.err.lower() and "Traceback" not in res.err and "internal error" not in res.err
    assert f"removed the partial image {target}" in res.err
    assert not target.exists()


def test_a_fresh_image_that_cannot_fit_is_refused_before_anything_is_fetched(cli, tmp_path, small_fs):
    """The data ranges of a fresh image file are allocated first: a disk without the room fails there,
    naming what the image needs, before a single pack is read."""
    _backup_of_random_data(cli, tmp_path, 16)
    target = small_fs / "restored.img"
    res = cli("restore", "latest", "--to", str(target), check=False)
    assert res.code == 16, res
    assert "too small for this restore: it needs 16 MiB for the image's data" in res.err, res.err
    assert f"removed the partial image {target}" in res.err and not target.exists()


def test_a_pre_existing_target_is_left_alone_when_the_disk_fills(cli, tmp_path, small_fs):
    _backup_of_random_data(cli, tmp_path, 16)
    target = small_fs / "old.img"
    target.write_bytes(b"old image")
    res = cli("restore", "latest", "--to", str(target), "--force", check=False)
    assert res.code == 16 and "no space left" in res.err.lower() and "removed" not in res.err
    assert target.exists()


def test_a_restore_that_fills_the_disk_leaves_no_journal_of_the_file_it_removed(cli, tmp_path, small_fs):
    _backup_of_random_data(cli, tmp_path, 16)
    target = small_fs / "restored.img"
    res = cli("restore", "latest", "--to", str(target), check=False)
    assert res.code == 16 and "removed the partial image" in res.err
    assert not (small_fs / ".restored.img.agent-restore").exists()
