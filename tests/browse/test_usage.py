"""The partition listing's "used" column (agent.browse.usage): equal to what each filesystem's own
tools report, and never an exception on damaged metadata."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.browse import usage


def _reader(data: bytes):
    return lambda off, n: data[off:off + n]


@settings(max_examples=300)
@given(data=st.binary(min_size=0, max_size=4096), patch=st.sampled_from([b"", b"\x53\xef", b"XFSB", b"\x55\xaa"]))
def test_parsers_return_a_size_or_none_on_any_bytes(data, patch):
    data = bytearray(data.ljust(4096, b"\0"))
    if patch == b"\x53\xef":
        data[1024 + 56:1024 + 58] = patch
    elif patch == b"XFSB":
        data[:4] = patch
    elif patch:
        data[510:512] = patch
    for fn in (usage.ext_used, usage.xfs_used, usage.fat_used):
        got = fn(_reader(bytes(data)))
        assert got is None or (isinstance(got, int) and got >= 0)


@given(bits=st.binary(max_size=64), units=st.integers(0, 600))
def test_bitmap_counts_only_the_first_units_bits(bits, units):
    got = usage.bitmap_used(bits, units, 4096)
    if len(bits) * 8 < units:
        assert got is None
    else:
        assert got == 4096 * sum((bits[i // 8] >> (i % 8)) & 1 for i in range(units))


def _partitions(cli) -> dict[int, int | None]:
    return {p["number"]: p["used"] for p in cli("ls", "latest", "--json").json()["partitions"]}


def _gpt(tmp_path, fs_image, size_mib: int):
    """A GPT disk holding `fs_image` as partition 1 (at 1 MiB)."""
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate((size_mib + 2) << 20)
    subprocess.run(["sgdisk", "-n", f"1:2048:+{size_mib}M", str(disk)], check=True, capture_output=True)
    with open(disk, "r+b") as f, open(fs_image, "rb") as src:
        f.seek(1 << 20)
        shutil.copyfileobj(src, f)
    return disk


def test_ext4_used_matches_dumpe2fs(cli, tmp_path):
    if not (shutil.which("mke2fs") and shutil.which("sgdisk")):
        pytest.skip("e2fsprogs or gdisk not installed")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data.bin").write_bytes(os.urandom(5 << 20))
    fs = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tmp_path / "src"), str(fs), "32M"], check=True)
    head = subprocess.run(["dumpe2fs", "-h", str(fs)], check=True, capture_output=True, text=True).stdout
    field = {k: int(v) for k, v in re.findall(r"^(Block count|Free blocks|Block size):\s+(\d+)", head, re.M)}
    cli("init")
    cli("backup", str(_gpt(tmp_path, fs, 32)))
    assert _partitions(cli) == {1: (field["Block count"] - field["Free blocks"]) * field["Block size"]}


def test_xfs_used_matches_xfs_db(cli, tmp_path):
    if not (shutil.which("mkfs.xfs") and shutil.which("xfs_db") and shutil.which("sgdisk")):
        pytest.skip("xfsprogs or gdisk not installed")
    fs = tmp_path / "fs.img"
    with open(fs, "wb") as f:
        f.truncate(300 << 20)
    subprocess.run(["mkfs.xfs", "-q", str(fs)], check=True)
    out = subprocess.run(["xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks fdblocks blocksize", str(fs)],
                         check=True, capture_output=True, text=True).stdout
    v = {k: int(n) for k, n in re.findall(r"^(\w+) = (\d+)", out, re.M)}
    cli("init")
    cli("backup", str(_gpt(tmp_path, fs, 300)))
    assert _partitions(cli) == {1: (v["dblocks"] - v["fdblocks"]) * v["blocksize"]}


def test_fat_used_matches_mdir(cli, tmp_path):
    if not (shutil.which("mkfs.vfat") and shutil.which("mcopy") and shutil.which("sgdisk")):
        pytest.skip("dosfstools, mtools or gdisk not installed")
    fs = tmp_path / "fs.img"
    subprocess.run(["mkfs.vfat", "-C", str(fs), str(48 * 1024)], check=True, capture_output=True)
    (tmp_path / "a.bin").write_bytes(os.urandom(3 << 20))
    subprocess.run(["mcopy", "-i", str(fs), str(tmp_path / "a.bin"), "::/"], check=True)
    out = subprocess.run(["mdir", "-i", str(fs), "::/"], check=True, capture_output=True, text=True).stdout
    free = int(re.search(r"([\d ]+) bytes free", out).group(1).replace(" ", ""))
    cli("init")
    cli("backup", str(_gpt(tmp_path, fs, 48)))
    assert _partitions(cli) == {1: (48 << 20) - free}


def test_ntfs_used_matches_ntfscluster(cli, tmp_path):
    if not (shutil.which("mkntfs") and shutil.which("ntfscluster") and shutil.which("sgdisk")):
        pytest.skip("ntfs-3g or gdisk not installed")
    fs = tmp_path / "fs.img"
    with open(fs, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-Q", str(fs)], check=True, capture_output=True)
    (tmp_path / "a.bin").write_bytes(os.urandom(3 << 20))
    subprocess.run(["ntfscp", "-q", str(fs), str(tmp_path / "a.bin"), "a.bin"], check=True, capture_output=True)
    out = subprocess.run(["ntfscluster", "-i", str(fs)], check=True, capture_output=True, text=True).stdout
    v = {k.strip(): int(n) for k, n in re.findall(r"^([a-z ]+):\s+(\d+)$", out, re.M)}
    cli("init")
    cli("backup", str(_gpt(tmp_path, fs, 64)))
    assert _partitions(cli) == {1: v["bytes per volume"] - v["bytes of free space"]}


@pytest.mark.skipif(os.geteuid() != 0, reason="a loop device and the exfat-fuse driver need root")
def test_exfat_used_matches_statvfs_of_the_mounted_filesystem(cli, tmp_path):
    if not (shutil.which("mkfs.exfat") and shutil.which("mount.exfat-fuse") and shutil.which("sgdisk")):
        pytest.skip("exfatprogs, exfat-fuse or gdisk not installed")
    fs = tmp_path / "fs.img"
    with open(fs, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.exfat", str(fs)], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(fs)], check=True, capture_output=True,
                          text=True).stdout.strip()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount.exfat-fuse", loop, str(mnt)], check=True, capture_output=True)
        try:
            (mnt / "a.bin").write_bytes(os.urandom(3 << 20))
            os.sync()
            st = os.statvfs(mnt)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    cli("init")
    cli("backup", str(_gpt(tmp_path, fs, 64)))
    # exfat-fuse counts the whole volume and its free clusters: the region before the cluster heap is used
    assert _partitions(cli) == {1: (st.f_blocks - st.f_bfree) * st.f_frsize}
