"""FAT, NTFS and exFAT filled by their own tools (mcopy; the ntfs-3g and exfat-fuse drivers, mounted
as root) with a directory tree, a file over 100 MiB and, where the filesystem has them, a symlink and
a sparse file: `agent ls -R --json` lists exactly that tree, and `agent extract` gives every file back
byte for byte with its mtime (and symlinks as symlinks, sparse files sparse)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MTIME = 1_700_000_000
BIG = 101 << 20


def _fill(root: Path, *, symlink: bool, sparse: bool) -> dict[str, bytes | str | None]:
    """Write the tree under `root` (a mounted filesystem, or a staging directory); returns what each
    path holds: bytes for a file, a str target for a symlink, None for a directory."""
    want: dict[str, bytes | str | None] = {"/DOCS": None, "/DOCS/2024": None, "/DOCS/2024/REPORT.TXT":
                                           b"quarterly numbers\r\n" * 300, "/README.TXT": b"hello\n"}
    big = os.urandom(1 << 20) * 3 + os.urandom(BIG - (3 << 20))  # a repeated MiB dedups inside the file
    want["/BIG.BIN"] = big
    if sparse:
        want["/SPARSE.IMG"] = bytes(30 << 20) + b"end of a sparse file\n"
    (root / "DOCS" / "2024").mkdir(parents=True)
    for path, data in want.items():
        if isinstance(data, bytes):
            p = root / path.lstrip("/")
            with open(p, "wb") as f:
                if path == "/SPARSE.IMG":
                    f.seek(30 << 20)
                    f.write(data[30 << 20:])
                else:
                    f.write(data)
    if symlink:
        (root / "CURRENT").symlink_to("DOCS/2024/REPORT.TXT")
        want["/CURRENT"] = "DOCS/2024/REPORT.TXT"
    for p in sorted(root.rglob("*"), reverse=True):
        os.utime(p, (MTIME, MTIME), follow_symlinks=False)
    return want


@contextlib.contextmanager
def _mounted(cmd: list[str], mnt: Path):
    mnt.mkdir()
    subprocess.run([*cmd, str(mnt)], check=True, capture_output=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _check(cli, tmp_path: Path, want: dict[str, bytes | str | None], *, sparse: bool) -> None:
    cli("init")
    cli("backup", str(tmp_path / "fs.img"))
    listed = {e["path"]: e for e in cli("ls", "latest:/", "-R", "--json").json()["entries"]}
    assert set(listed) == set(want), sorted(set(listed) ^ set(want))
    for path, data in want.items():
        kind = {bytes: "file", str: "symlink", type(None): "dir"}[type(data)]
        assert listed[path]["type"] == kind, path
        if isinstance(data, bytes):
            assert listed[path]["size"] == len(data), path
    res = cli("extract", "latest:/", "--to", str(tmp_path / "out"), "--json").json()
    assert res["failed"] == [] and res["files"] == sum(isinstance(d, bytes) for d in want.values())
    out = tmp_path / "out"
    for path, data in want.items():
        q = out / path.lstrip("/")
        if isinstance(data, str):
            assert q.is_symlink() and os.readlink(q) == data, path
        elif isinstance(data, bytes):
            assert q.read_bytes() == data, path
            assert int(q.stat().st_mtime) == MTIME, path
        else:
            assert q.is_dir() and not q.is_symlink(), path
    if sparse:
        assert (out / "SPARSE.IMG").stat().st_blocks * 512 < 1 << 20, "the sparse file was written out in full"


def test_fat32_filled_by_mcopy(cli, tmp_path):
    if not (shutil.which("mkfs.vfat") and shutil.which("mcopy")):
        pytest.skip("mkfs.vfat or mcopy not installed (dosfstools, mtools)")
    stage = tmp_path / "stage"
    stage.mkdir()
    want = _fill(stage, symlink=False, sparse=False)
    image = tmp_path / "fs.img"
    subprocess.run(["mkfs.vfat", "-F", "32", "-C", "-n", "DATA", str(image), str(160 * 1024)], check=True,
                   capture_output=True)
    subprocess.run(["mcopy", "-s", "-m", "-i", str(image), *(str(p) for p in sorted(stage.iterdir())), "::/"],
                   check=True)
    _check(cli, tmp_path, want, sparse=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting ntfs-3g needs root")
def test_ntfs_filled_through_ntfs3g(cli, tmp_path):
    if not (shutil.which("mkntfs") and shutil.which("ntfs-3g")):
        pytest.skip("mkntfs or ntfs-3g not installed (ntfs-3g)")
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(200 << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-Q", "-L", "DATA", str(image)], check=True, capture_output=True)
    with _mounted(["ntfs-3g", str(image)], tmp_path / "mnt") as mnt:
        want = _fill(mnt, symlink=True, sparse=True)
    _check(cli, tmp_path, want, sparse=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="a loop device and the exfat-fuse driver need root")
def test_exfat_filled_through_exfat_fuse(cli, tmp_path):
    if not (shutil.which("mkfs.exfat") and shutil.which("mount.exfat-fuse")):
        pytest.skip("mkfs.exfat or mount.exfat-fuse not installed (exfatprogs, exfat-fuse)")
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(160 << 20)
    subprocess.run(["mkfs.exfat", "-L", "CARD", str(image)], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:  # exfat-fuse mounts only block devices
        with _mounted(["mount.exfat-fuse", loop], tmp_path / "mnt") as mnt:
            want = _fill(mnt, symlink=False, sparse=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    _check(cli, tmp_path, want, sparse=False)
