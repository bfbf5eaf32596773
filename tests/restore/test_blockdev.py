"""Block devices, through loop devices: restore to a disk, refusals, and the mounted-source warning.

Needs root and the loop driver (both available on the project's machines and CI); skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _losetup(path) -> str:
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for loop devices")
    res = subprocess.run(["losetup", "--find", "--show", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"no loop device available: {res.stderr.strip()}")
    return res.stdout.strip()


@pytest.fixture
def loop(tmp_path):
    made: list[str] = []

    def make(size: int, name: str, fill: bytes | None = None) -> str:
        backing = tmp_path / name
        with open(backing, "wb") as f:
            if fill:
                f.write(fill)
            f.truncate(size)
        dev = _losetup(backing)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        subprocess.run(["umount", dev], capture_output=True)
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_restore_to_a_larger_disk_with_old_data(cli, loop, tmp_path):
    img = tmp_path / "img"
    with open(img, "wb") as f:
        f.write(os.urandom(2 << 20))
        f.seek(10 << 20)
        f.write(os.urandom(1 << 20))
        f.truncate(16 << 20)
    cli("init")
    cli("backup", str(img))
    dev = loop(24 << 20, "disk", fill=b"\xff" * (20 << 20))  # old, non-zero content everywhere
    res = cli("restore", "latest", "--to", dev, check=False)
    assert res.code == 16 and "--force" in res.err
    cli("restore", "latest", "--to", dev, "--force")
    with open(dev, "rb") as f:
        restored = f.read(16 << 20)
    assert restored == img.read_bytes()  # zero runs were really zeroed on the device


def test_restore_refuses_a_smaller_disk(cli, loop, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(os.urandom(3 << 20))
    cli("init")
    cli("backup", str(img))
    dev = loop(2 << 20, "small")
    res = cli("restore", "latest", "--to", dev, "--force", check=False)
    assert res.code == 16 and "fewer than the image" in res.err


def test_mounted_disk_refused_as_target_and_warned_as_source(cli, loop, tmp_path):
    dev = loop(32 << 20, "fs")
    subprocess.run(["mkfs.ext4", "-q", dev], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", dev, str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount ext4 here")
    cli("init")
    res = cli("backup", dev)
    assert "mounted read-write" in res.err and "snapshot" in res.err
    res = cli("restore", "latest", "--to", dev, "--force", check=False)
    assert res.code == 16 and "mounted" in res.err
