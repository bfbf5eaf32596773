"""Fixtures of the restore tests: two days of one disk, backed up."""

from __future__ import annotations

import os
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
