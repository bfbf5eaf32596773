"""--grow beyond the GPT+ext4 sample: an MBR disk (sfdisk), an NTFS last partition (ntfsresize), and a
larger block device (a loop device as the target). Needs root for the loop devices; skips otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

MIB = 1 << 20

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"),
                                reason="needs root and losetup (loop devices)")


def sh(*args, stdin: str | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, input=stdin)
    assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def place(fs_image: Path, disk: Path, offset: int) -> None:
    with open(fs_image, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(offset)
        while block := src.read(4 * MIB):
            dst.write(block)


def sfdisk_parts(path: Path) -> list[tuple[int, int, str]]:
    """(start sector, sectors, type) per partition, from sfdisk's own dump."""
    dump = sh("sfdisk", "--dump", path)
    return [(int(m[0]), int(m[1]), m[2]) for m in re.findall(r"start=\s*(\d+), size=\s*(\d+), type=(\w+)", dump)]


def test_grow_an_mbr_disk_with_ext4_last(cli, tmp_path):
    if not shutil.which("sfdisk"):
        pytest.skip("needs sfdisk (fdisk)")
    disk, fs = tmp_path / "mbr.img", tmp_path / "p2.ext4"
    with open(disk, "wb") as f:
        f.truncate(48 * MIB)
    sh("sfdisk", "-q", disk, stdin="label: dos\nstart=2048, size=16384, type=83\nstart=18432, size=40960, type=83\n")
    sh("mke2fs", "-q", "-F", "-t", "ext4", "-L", "data", fs, "20M")
    place(fs, disk, 18432 * 512)
    cli("init")
    cli("backup", str(disk))
    out = tmp_path / "grown.img"
    res = cli("restore", "latest", "--to", str(out), "--size", "96MiB", "--grow", "--json").json()
    assert res["grown_partition"] == 2 and res["filesystem_grown"] is True and res["gpt_moved"] is False
    before, after = sfdisk_parts(disk), sfdisk_parts(out)
    assert after[0] == before[0]
    assert after[1][0] == 18432 and after[1][2] == "83" and after[1][0] + after[1][1] == 96 * MIB // 512
    sh("e2fsck", "-fn", f"{out}?offset={18432 * 512}")
    head = sh("dumpe2fs", "-h", f"{out}?offset={18432 * 512}")
    fs_bytes = int(re.search(r"Block count:\s+(\d+)", head)[1]) * int(re.search(r"Block size:\s+(\d+)", head)[1])
    assert fs_bytes == (96 - 9) * MIB  # the whole partition, from 9 MiB to the end


def test_grow_an_ntfs_last_partition(cli, tmp_path):
    if not shutil.which("mkntfs") or not shutil.which("ntfsresize"):
        pytest.skip("needs ntfs-3g")
    disk, fs = tmp_path / "win.img", tmp_path / "p2.ntfs"
    with open(disk, "wb") as f:
        f.truncate(64 * MIB)
    sh("sgdisk", "-n", "1:2048:+16M", "-t", "1:ef00", "-n", "2:0:+32M", "-t", "2:0700", "-c", "2:Windows", disk)
    start = int(re.search(r"First sector: (\d+)", sh("sgdisk", "-i", "2", disk)).group(1)) * 512
    with open(fs, "wb") as f:
        f.truncate(32 * MIB)
    sh("mkntfs", "-q", "-F", "-Q", "-L", "win", fs)
    place(fs, disk, start)
    cli("init")
    cli("backup", str(disk))
    out = tmp_path / "grown.img"
    res = cli("restore", "latest", "--to", str(out), "--size", "128MiB", "--grow", "--json").json()
    assert res["grown_partition"] == 2 and res["filesystem_grown"] is True
    assert "No problems found" in sh("sgdisk", "-v", out)
    end = int(re.search(r"Last sector: (\d+)", sh("sgdisk", "-i", "2", out)).group(1))
    assert end == 128 * MIB // 512 - 34
    dev = sh("losetup", "--find", "--show", "-o", start, "--sizelimit", (end + 1) * 512 - start, out).strip()
    try:
        sh("ntfsresize", "--check", "--force", dev)
        size = int(re.search(r"Current volume size: (\d+)", sh("ntfsresize", "--info", "--force", dev)).group(1))
    finally:
        sh("losetup", "-d", dev)
    assert size > 100 * MIB


def test_grow_onto_a_larger_block_device(cli, tmp_path):
    from tests.diskimage import MissingTool, build_sample_image

    try:
        info = build_sample_image(tmp_path / "disk.img", size_mib=64)
    except MissingTool as exc:
        pytest.skip(str(exc))
    cli("init")
    cli("backup", str(info.path))
    backing = tmp_path / "backing"
    with open(backing, "wb") as f:
        f.truncate(96 * MIB)
    dev = sh("losetup", "--find", "--show", backing).strip()
    try:
        res = cli("restore", "latest", "--to", dev, "--size", "80MiB", check=False)
        assert res.code == 2 and "--size is for image files" in res.err
        res = cli("restore", "latest", "--to", dev, "--grow", "--json").json()
        assert res["disk_size"] == 96 * MIB and res["filesystem_grown"] is True
        assert "No problems found" in sh("sgdisk", "-v", dev)
        sh("e2fsck", "-fn", f"{dev}?offset={info.root.start}")
    finally:
        sh("losetup", "-d", dev)
    assert not [ln for ln in sh("losetup", "-a").splitlines() if str(tmp_path) in ln]  # every loop detached
