"""GPT disks whose partitions hold real filesystems made by their own tools (ext4, FAT, exFAT, NTFS,
XFS), for `agent verify --fsck`; and a way to damage an ext4 the way a crash or a bad disk would."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.diskimage import copy_sparse

MIB = 1 << 20
ENV = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin", "LC_ALL": "C"}

#: filesystem -> (size in MiB, the command that makes it in the file given last)
MAKERS = {
    "vfat": (16, ["mkfs.vfat", "-n", "ESP"]),
    "ext4": (32, ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root"]),
    "exfat": (8, ["mkfs.exfat", "-L", "shared"]),
    "ntfs": (16, ["mkntfs", "-q", "-F", "-f", "-L", "windows"]),
    "xfs": (300, ["mkfs.xfs", "-q", "-L", "data"]),  # mkfs.xfs's smallest filesystem
}


@dataclass(frozen=True)
class Part:
    number: int
    filesystem: str
    start: int
    size: int


def run(*argv: str | os.PathLike) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, f"{argv[0]} failed: {proc.stdout}{proc.stderr}"
    return proc.stdout


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=ENV["PATH"]) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (make system-deps)")


def make_fs(kind: str, path: Path, files: Path | None = None) -> None:
    size_mib, argv = MAKERS[kind]
    with open(path, "wb") as f:
        f.truncate(size_mib * MIB)
    extra = ["-d", str(files)] if kind == "ext4" and files is not None else []
    run(*argv, *extra, path)


def build_disk(path: Path, kinds: list[str], tmp: Path) -> list[Part]:
    """A sparse GPT disk with one partition per filesystem kind, in order, plus a raw partition of
    random bytes at the end (no filesystem: "not checked")."""
    need("sgdisk", *(MAKERS[k][1][0] for k in kinds))
    parts, at = [], MIB
    for i, kind in enumerate(kinds, 1):
        parts.append(Part(i, kind, at, MAKERS[kind][0] * MIB))
        at += MAKERS[kind][0] * MIB
    raw = Part(len(kinds) + 1, "", at, MIB)
    size = at + 2 * MIB
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    args = []
    for p in [*parts, raw]:
        args += [f"--new={p.number}:{p.start // 512}:{(p.start + p.size) // 512 - 1}", f"--typecode={p.number}:8300"]
    run("sgdisk", *args, path)
    tree = tmp / "tree"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "hostname").write_text("verify-host\n")
    (tree / "data.bin").write_bytes(os.urandom(MIB))
    for p in parts:
        fs = tmp / f"p{p.number}.{p.filesystem}"
        make_fs(p.filesystem, fs, tree)
        copy_sparse(fs, path, p.start)
        fs.unlink()
    with open(path, "r+b") as f:
        os.pwrite(f.fileno(), os.urandom(raw.size), raw.start)
    return [*parts, raw]


def damage_ext4(image: Path, part: Part) -> None:
    """Give the root directory's inode a wrong link count, as an unclean crash can leave it:
    `e2fsck -fn` then exits 4 ("errors left uncorrected"), while the filesystem still mounts."""
    out = subprocess.run(["debugfs", "-w", "-R", "sif <2> links_count 7", f"{image}?offset={part.start}"],
                         capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
