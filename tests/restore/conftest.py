"""Fixtures of the restore tests: two days of one disk, backed up."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MiB = 1 << 20


def _images(tmp_path: Path) -> tuple[Path, Path]:
    """An old disk and the same disk a day later: a few changed and moved regions, a new zero run
    and zeros that became data."""
    old = tmp_path / "old.img"
    with open(old, "wb") as f:
        f.write(os.urandom(20 * MiB))
        f.seek(28 * MiB)
        f.write(os.urandom(4 * MiB))
        f.truncate(40 * MiB)
    data = bytearray(old.read_bytes())
    data[3 * MiB:3 * MiB + 70_000] = os.urandom(70_000)  # an edit in place
    data[9 * MiB:11 * MiB] = bytes(2 * MiB)  # a region wiped
    data[14 * MiB:15 * MiB] = data[1 * MiB:2 * MiB]  # data copied from elsewhere in the disk
    data[22 * MiB:24 * MiB] = os.urandom(2 * MiB)  # zeros that became data
    new = tmp_path / "new.img"
    new.write_bytes(bytes(data))
    return old, new


@pytest.fixture
def two_days(cli, tmp_path):
    old, new = _images(tmp_path)
    cli("init")
    cli("backup", str(old), "--tag", "day1")
    added = cli("backup", "--json", str(new), "--tag", "day2").json()
    return old, new, added["stored_bytes"]


@pytest.fixture
def loop_device(tmp_path):
    """make(size): a loop device over a sparse file of `size` bytes (root; skipped otherwise)."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for loop devices")
    made: list[str] = []

    def make(size: int) -> str:
        backing = tmp_path / f"disk{len(made)}"
        with open(backing, "wb") as f:
            f.truncate(size)
        res = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"no loop device available: {res.stderr.strip()}")
        made.append(res.stdout.strip())
        return made[-1]

    yield make
    for dev in made:
        subprocess.run(["umount", dev], capture_output=True)
        subprocess.run(["losetup", "-d", dev], capture_output=True)
