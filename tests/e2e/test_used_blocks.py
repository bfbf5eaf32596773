"""Used blocks only, end to end, on a GPT disk holding ext4, FAT32, NTFS, XFS and swap, each filled by
its own tools and then partly deleted: the deleted data is not stored, the restored image passes
every filesystem's checker with every live file identical (tests.fscompare, with the filesystems'
own tools), and the swap partition keeps its UUID and label. An NTFS pagefile.sys counts as free
unless --keep-pagefile."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fscompare import compare

MIB = 1 << 20
DELETED = 40 * MIB  # per filesystem: written, then removed

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"),
                                reason="needs root: XFS through a kernel mount, NTFS through ntfs-3g")

LAYOUT = [  # (type code, MiB, filesystem)
    ("8300", 96, "ext4"), ("0700", 96, "vfat"), ("0700", 96, "ntfs"), ("8300", 320, "xfs"), ("8200", 16, "swap"),
]


def _run(*cmd: str | os.PathLike, **kw) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw).stdout


def _partitions(img: Path) -> list[tuple[int, int]]:
    out = []
    for n in range(1, len(LAYOUT) + 1):
        info = _run("sgdisk", "-i", str(n), img)
        first = int(info.split("First sector: ")[1].split()[0])
        last = int(info.split("Last sector: ")[1].split()[0])
        out.append((first * 512, (last - first + 1) * 512))
    return out


class _Loop:
    """A partition of the image as a loop device (at its byte offset), mounted at a directory."""

    def __init__(self, img: Path, start: int, size: int, mnt: Path, mount: list[str]) -> None:
        self.dev = _run("losetup", "--find", "--show", "-o", str(start), "--sizelimit", str(size), img).strip()
        self.mnt = mnt
        mnt.mkdir(exist_ok=True)
        try:
            _run(*mount, self.dev, mnt)
        except BaseException:
            _run("losetup", "-d", self.dev)
            raise

    def __enter__(self) -> Path:
        return self.mnt

    def __exit__(self, *exc) -> None:
        subprocess.run(["umount", str(self.mnt)], check=True)
        subprocess.run(["losetup", "-d", self.dev], check=True)


def _fill_and_delete(root: Path, tag: str) -> None:
    """Live files (a tree, some random data) and 40 MiB of random files that are then deleted."""
    (root / "docs" / "2024").mkdir(parents=True)
    (root / "docs" / "2024" / "report.txt").write_bytes(f"quarterly numbers {tag}\n".encode() * 500)
    (root / "live.bin").write_bytes(os.urandom(MIB + 12345))
    for k in range(5):
        (root / f"old{k}.bin").write_bytes(os.urandom(DELETED // 5))
    os.sync()
    for k in range(5):
        (root / f"old{k}.bin").unlink()


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("usedblocks")
    img = tmp / "disk.img"
    with open(img, "wb") as f:
        f.truncate((sum(mib for _, mib, _ in LAYOUT) + 2) * MIB)
    args = []
    for n, (code, mib, _) in enumerate(LAYOUT, 1):
        args += [f"-n{n}:0:+{mib}M", f"-t{n}:{code}"]
    _run("sgdisk", *args, img)
    parts = _partitions(img)
    with open(img, "r+b") as f:  # old data everywhere first: free space is never zero on a used disk
        for start, size in parts:
            f.seek(start)
            f.write(os.urandom(size))
    for (start, size), (_, _, fs), n in zip(parts, LAYOUT, range(1, 9)):
        mnt = tmp / f"m{n}"
        if fs == "ext4":
            _run("mke2fs", "-q", "-t", "ext4", "-L", "linux", "-E", f"offset={start},nodiscard", img,
                 f"{size // 1024}k")
            with _Loop(img, start, size, mnt, ["mount"]) as root:
                _fill_and_delete(root, fs)
        elif fs == "xfs":
            dev = _run("losetup", "--find", "--show", "-o", str(start), "--sizelimit", str(size), img).strip()
            try:
                _run("mkfs.xfs", "-q", "-f", "-K", "-L", "data", dev)
            finally:
                _run("losetup", "-d", dev)
            with _Loop(img, start, size, mnt, ["mount"]) as root:
                _fill_and_delete(root, fs)
        elif fs == "ntfs":
            dev = _run("losetup", "--find", "--show", "-o", str(start), "--sizelimit", str(size), img).strip()
            try:
                _run("mkntfs", "-Q", "-F", "-L", "windows", dev)
            finally:
                _run("losetup", "-d", dev)
            with _Loop(img, start, size, mnt, ["ntfs-3g"]) as root:
                _fill_and_delete(root, fs)
        elif fs == "vfat":
            _run("mkfs.vfat", "-F", "32", "-s", "1", "-n", "SHARED", "--offset", str(start // 512), img,
                 str(size // 1024))
            stage = tmp / "fat-stage"
            _fill_and_delete_fat(img, start, stage)
        else:
            dev = _run("losetup", "--find", "--show", "-o", str(start), "--sizelimit", str(size), img).strip()
            try:
                _run("mkswap", "-L", "swappy", dev)
            finally:
                _run("losetup", "-d", dev)
    return img


def _fill_and_delete_fat(img: Path, start: int, stage: Path) -> None:
    """FAT has no kernel driver here: mtools writes and deletes the same files."""
    target = f"{img}@@{start}"
    stage.mkdir()
    _fill_and_delete_stage(stage)
    _run("mcopy", "-s", "-i", target, stage / "docs", "::/")
    _run("mcopy", "-i", target, stage / "live.bin", "::/")
    for k in range(5):
        blob = stage / f"old{k}.bin"
        blob.write_bytes(os.urandom(DELETED // 5))
        _run("mcopy", "-i", target, blob, "::/")
    for k in range(5):
        _run("mdel", "-i", target, f"::/old{k}.bin")


def _fill_and_delete_stage(stage: Path) -> None:
    (stage / "docs" / "2024").mkdir(parents=True)
    (stage / "docs" / "2024" / "report.txt").write_bytes(b"quarterly numbers fat\n" * 500)
    (stage / "live.bin").write_bytes(os.urandom(MIB + 12345))


def test_deleted_data_is_not_stored_and_every_file_restores(cli, disk, tmp_path):
    cli("init")
    res = cli("backup", str(disk), "--json").json()
    deleted = 4 * DELETED + 15 * MIB  # four filesystems' deleted files, and the swap partition's old bytes
    print(f"stored {res['stored_bytes']} of {deleted} deleted bytes ({res['stored_bytes'] / deleted:.1%}), read "
          f"{res['read_bytes']}, skipped {res['skipped_free_bytes']}")
    assert res["stored_bytes"] < 0.25 * deleted, res
    reading = {p["filesystem"]: p for p in res["reading"]["partitions"]}
    assert {fs: reading[fs]["read"] for fs in reading} == {"ext4": "used", "vfat": "used", "ntfs": "used",
                                                           "xfs": "used", "swap": "header"}, reading
    assert res["skipped_free_bytes"] >= deleted and res["read_bytes"] < 0.5 * deleted
    listed = cli("ls", "latest").out
    assert listed.count("[used blocks]") == 4 and "[swap header]" in listed
    cli("restore", "latest", "--to", str(tmp_path / "restored.img"))
    checked = compare(disk, tmp_path / "restored.img", tmp_path / "cmp")
    print("\n".join(checked))
    assert len(checked) == 5, checked
    assert sum("checker clean" in line for line in checked) == 4 and "UUID" in checked[4], checked


def test_all_blocks_restores_byte_identically(cli, disk, tmp_path):
    cli("init")
    res = cli("backup", str(disk), "--all-blocks", "--json").json()
    assert res["skipped_free_bytes"] == 0 and res["reading"]["mode"] == "all"
    cli("restore", "latest", "--to", str(tmp_path / "restored.img"))
    _run("cmp", disk, tmp_path / "restored.img")


def test_ntfs_pagefile_is_free_space_unless_kept(cli, tmp_path):
    img = tmp_path / "win.img"
    with open(img, "wb") as f:
        f.truncate(400 * MIB)
    _run("mkntfs", "-Q", "-F", "-L", "win", img)
    page = 300 * MIB  # random, like a pagefile in use
    mnt = tmp_path / "m"
    mnt.mkdir()
    _run("ntfs-3g", img, mnt)
    try:
        (mnt / "pagefile.sys").write_bytes(os.urandom(page))
        (mnt / "notes.txt").write_text("keep me\n")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    cli("init")
    res = cli("backup", str(img), "--json").json()
    print(f"pagefile {page} bytes: stored {res['stored_bytes']} ({res['stored_bytes'] / page:.1%})")
    assert res["stored_bytes"] < 0.10 * page, res
    assert res["reading"]["partitions"][0]["excluded"] == [{"name": "pagefile.sys", "bytes": page}]
    kept = cli("backup", str(img), "--keep-pagefile", "--json").json()
    assert kept["new_bytes"] > 0.9 * page and kept["reading"]["keep_pagefile"] is True
    cli("restore", res["snapshot_id"], "--to", str(tmp_path / "r.img"))
    _run("ntfsfix", "-n", tmp_path / "r.img")
    info = _run("ntfsinfo", "-F", "/pagefile.sys", tmp_path / "r.img")
    assert str(page) in info  # still there, with its size; its contents are zeros
    assert _run("ntfscat", tmp_path / "r.img", "notes.txt") == "keep me\n"
