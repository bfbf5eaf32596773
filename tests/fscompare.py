"""Check a restored disk image against its source the way a used-blocks backup promises: every
partition's filesystem passes its own read-only checker, and every live file (contents, and the
names and kinds of every entry) is the same. Free space may differ: it restores as zeros.

Each filesystem is read with its own tools (debugfs, mtools, ntfs-3g, a kernel XFS mount, exfat
fuse), never with the agent's readers, so a bug there cannot hide itself.

    python -m tests.fscompare ORIGINAL.img RESTORED.img
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.source.partitions import read_partition_table

CHECKERS = {
    "ext2": ["e2fsck", "-fn"], "ext3": ["e2fsck", "-fn"], "ext4": ["e2fsck", "-fn"],
    "vfat": ["fsck.fat", "-n"], "ntfs": ["ntfsfix", "-n"], "xfs": ["xfs_repair", "-n", "-f"],
    "exfat": ["fsck.exfat", "-n"],
}


def carve(img: Path, start: int, size: int, out: Path) -> Path:
    """One partition as its own (sparse) file, for tools that take no offset."""
    with open(img, "rb") as src, open(out, "wb") as dst:
        pos = 0
        while pos < size:
            n = min(4 << 20, size - pos)
            data = os.pread(src.fileno(), n, start + pos)
            if data.strip(b"\0"):
                os.pwrite(dst.fileno(), data, pos)
            pos += n
        dst.truncate(size)
    return out


def check_filesystem(kind: str, part: Path) -> None:
    """The filesystem's own read-only checker must find nothing wrong."""
    cmd = CHECKERS.get(kind)
    if cmd is None:
        return
    proc = subprocess.run([*cmd, str(part)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} on the restored {kind} partition exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")


def _mounted_copy(cmd: list[str], umount: list[str], out: Path) -> None:
    mnt = Path(tempfile.mkdtemp(prefix="fscmp-mnt-"))
    subprocess.run([*cmd, str(mnt)], check=True, capture_output=True)
    try:
        shutil.copytree(mnt, out, symlinks=True, dirs_exist_ok=True)
    finally:
        subprocess.run([*umount, str(mnt)], check=True, capture_output=True)
        mnt.rmdir()


def extract_files(kind: str, part: Path, out: Path) -> None:
    """Every file of the filesystem into `out`, with its own tools."""
    out.mkdir(parents=True, exist_ok=True)
    if kind in ("ext2", "ext3", "ext4"):
        subprocess.run(["debugfs", "-R", f"rdump / {out}", str(part)], check=True, capture_output=True)
    elif kind == "vfat":
        subprocess.run(["mcopy", "-s", "-n", "-i", str(part), "::/", str(out)], check=True, capture_output=True)
    elif kind == "ntfs":
        _mounted_copy(["ntfs-3g", "-o", "ro", str(part)], ["fusermount3", "-u"], out)
    elif kind == "exfat":
        _mounted_copy(["mount.exfat-fuse", "-o", "ro", str(part)], ["fusermount3", "-u"], out)
    elif kind == "xfs":
        _mounted_copy(["mount", "-o", "ro,loop,norecovery", str(part)], ["umount"], out)
    else:
        raise ValueError(f"no tool to read {kind}")


def tree(root: Path) -> dict[str, str]:
    """{relative path: kind and content hash (or link target)} of a directory tree."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if rel.startswith("lost+found"):
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def blkid(part: Path) -> dict[str, str]:
    proc = subprocess.run(["blkid", "-p", "-o", "export", str(part)], capture_output=True, text=True)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def compare(original: Path, restored: Path, work: Path | None = None) -> list[str]:
    """Check every partition of `restored` against `original`; the lines say what was checked.
    AssertionError on any difference."""
    work = work or Path(tempfile.mkdtemp(prefix="fscmp-"))
    work.mkdir(parents=True, exist_ok=True)
    size = original.stat().st_size
    with open(original, "rb") as f:
        table = read_partition_table(lambda off, n: os.pread(f.fileno(), n, off), size)
    assert restored.stat().st_size == size, "restored image has another size"
    first = min((p.start for p in table.partitions), default=size)
    with open(original, "rb") as fa, open(restored, "rb") as fb:
        assert fa.read(first) == fb.read(first), "the partition table area differs"
    done: list[str] = []
    for p in table.partitions:
        a = carve(original, p.start, p.size, work / f"a{p.number}")
        b = carve(restored, p.start, p.size, work / f"b{p.number}")
        kind = p.filesystem or ""
        if kind == "swap":
            ids_a, ids_b = blkid(a), blkid(b)
            assert (ids_a.get("UUID"), ids_a.get("LABEL")) == (ids_b.get("UUID"), ids_b.get("LABEL")), (ids_a, ids_b)
            done.append(f"p{p.number} swap: UUID {ids_b.get('UUID')} LABEL {ids_b.get('LABEL')}")
        elif kind in CHECKERS:
            check_filesystem(kind, b)
            extract_files(kind, a, work / f"fa{p.number}")
            extract_files(kind, b, work / f"fb{p.number}")
            ta, tb = tree(work / f"fa{p.number}"), tree(work / f"fb{p.number}")
            assert ta == tb, f"p{p.number} ({kind}): files differ: {sorted(set(ta.items()) ^ set(tb.items()))[:5]}"
            done.append(f"p{p.number} {kind}: checker clean, {sum(v.startswith('file') for v in tb.values())} "
                        "files identical")
        else:
            assert a.read_bytes() == b.read_bytes(), f"p{p.number} ({kind or 'no filesystem'}) differs"
            done.append(f"p{p.number} {kind or 'raw'}: byte-identical")
        a.unlink()
        b.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return done


if __name__ == "__main__":
    for line in compare(Path(sys.argv[1]), Path(sys.argv[2])):
        print(line)
