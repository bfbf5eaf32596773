"""Build and modify realistic small disk images without root, for tests and `make demo`.

A backup tool for disk images must be exercised on real partition tables and real
filesystems, not random bytes: chunk boundaries, zero runs and metadata churn look different
there. Everything here uses userspace tools on regular files (sgdisk, mkfs.vfat + mtools,
mke2fs -d + debugfs), so no mount, loop device or root is needed.

    python -m tests.diskimage build OUT.img [--size-mib N] [--marker TEXT] [--seed N]
    python -m tests.diskimage change OUT.img [--seed N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
BLOCK = 64 << 10  # copy granularity; all-zero blocks are skipped to keep images sparse
ALIGN_MIB = 1  # first partition at 1 MiB, as every modern partitioner does

# tool -> apt package that provides it
TOOLS = {
    "sgdisk": "gdisk",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
}

ESP_TYPE = "ef00"
LINUX_TYPE = "8300"


class MissingTool(RuntimeError):
    """A required userspace tool is not installed; the message names the apt package."""


class ToolFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class PartInfo:
    number: int
    start: int  # bytes
    size: int  # bytes
    filesystem: str  # "vfat" or "ext4"
    label: str


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    size: int  # bytes
    partitions: tuple[PartInfo, ...]
    marker_path: str | None = None  # path inside the ext4 filesystem holding the marker

    @property
    def esp(self) -> PartInfo:
        return self.partitions[0]

    @property
    def root(self) -> PartInfo:
        return self.partitions[1]

    @property
    def unallocated_start(self) -> int:
        """Where the free tail of the disk begins (the backup GPT sits in its last 33 sectors)."""
        return max(p.start + p.size for p in self.partitions)


# ---------------------------------------------------------------------------------------
# Tool plumbing


def _tool_env() -> dict[str, str]:
    """sbin is often missing from a normal user's PATH although the tools work unprivileged."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
    env["MTOOLS_SKIP_CHECK"] = "1"  # image files have no real disk geometry
    env["LC_ALL"] = "C"
    return env


def require_tools(*names: str) -> None:
    """Raise MissingTool naming each absent tool and the apt package that provides it."""
    path = _tool_env()["PATH"]
    missing = [n for n in (names or TOOLS) if shutil.which(n, path=path) is None]
    if missing:
        pkgs = sorted({TOOLS[n] for n in missing})
        raise MissingTool(
            f"missing tool(s): {', '.join(missing)}; install with: apt-get install {' '.join(pkgs)}"
        )


def _run(*args: str | os.PathLike) -> str:
    require_tools(str(args[0]))
    proc = subprocess.run([str(a) for a in args], capture_output=True, env=_tool_env())
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise ToolFailed(f"{args[0]} failed ({proc.returncode}): {why}")
    return proc.stdout.decode(errors="replace")


def _debugfs(device: str, commands: list[str], *, write: bool = False) -> str:
    """Run debugfs commands; it exits 0 even when a command fails, so stderr is checked."""
    require_tools("debugfs")
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
        script.write("\n".join(commands) + "\n")
        script.flush()
        args = ["debugfs", *(["-w"] if write else []), "-f", script.name, device]
        proc = subprocess.run(args, capture_output=True, env=_tool_env())
    errors = [
        line
        for line in proc.stderr.decode(errors="replace").splitlines()
        if line.strip() and not line.startswith("debugfs ")
    ]
    if proc.returncode != 0 or errors:
        raise ToolFailed(f"debugfs {' / '.join(commands)} failed: {'; '.join(errors)}")
    return proc.stdout.decode(errors="replace")


def _ext_device(path: Path, part: PartInfo) -> str:
    # e2fsprogs' unix I/O manager accepts "file?offset=N", so debugfs and e2fsck can work on
    # the partition in place without copying it out.
    return f"{path}?offset={part.start}"


def copy_sparse(
    src: Path, dst: Path, dst_offset: int, *, src_offset: int = 0, length: int | None = None
) -> None:
    """dd conv=sparse,notrunc: copy src into dst at an offset, skipping all-zero blocks."""
    zero = bytes(BLOCK)
    with open(src, "rb") as fin, open(dst, "r+b" if dst.exists() else "w+b") as fout:
        remaining = os.fstat(fin.fileno()).st_size - src_offset if length is None else length
        pos = 0
        while remaining > 0:
            n = min(BLOCK, remaining)
            buf = os.pread(fin.fileno(), n, src_offset + pos)
            if not buf:
                break
            if buf != zero[: len(buf)]:
                os.pwrite(fout.fileno(), buf, dst_offset + pos)
            pos += len(buf)
            remaining -= len(buf)
        if length is not None and fout.seek(0, os.SEEK_END) < dst_offset + length:
            fout.truncate(dst_offset + length)


def extract_partition(image: Path, part: PartInfo, dest: Path) -> Path:
    """Copy one partition out to its own sparse file (for fsck and the like)."""
    dest = Path(dest)
    dest.unlink(missing_ok=True)
    copy_sparse(Path(image), dest, 0, src_offset=part.start, length=part.size)
    return dest


# ---------------------------------------------------------------------------------------
# Content generation

_WORDS = ["backup", "restore", "chunk", "snapshot", "disk", "image", "night", "daily", "encrypted", "repository",
          "key", "partition", "block", "sector", "journal", "inode", "cluster", "volume", "index", "manifest",
          "offset", "retention", "prune", "verify", "upload", "bandwidth", "storage", "bucket", "region", "pack",
          "object"]


def _text(rng: random.Random, lines: int) -> str:
    return "".join(
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 12))).capitalize() + ".\n"
        for _ in range(lines)
    )


def _write(root: Path, rel: str, data: bytes | str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        p.write_text(data)
    else:
        p.write_bytes(data)


def _esp_tree(root: Path, rng: random.Random) -> None:
    _write(root, "EFI/BOOT/BOOTX64.EFI", b"MZ" + rng.randbytes(192 << 10))
    _write(
        root,
        "EFI/BOOT/grub.cfg",
        "set timeout=3\nmenuentry 'Linux' {\n  linux /vmlinuz root=LABEL=root\n}\n",
    )
    _write(root, "loader/loader.conf", "default linux\ntimeout 3\n")
    _write(root, "README.TXT", _text(rng, 20))


def _root_tree(root: Path, rng: random.Random, data_bytes: int, marker: bytes | None) -> str | None:
    _write(root, "etc/hostname", "demo-host\n")
    _write(
        root,
        "etc/fstab",
        "LABEL=root / ext4 defaults 0 1\nLABEL=ESP /boot/efi vfat umask=0077 0 2\n",
    )
    _write(root, "home/user/notes.txt", _text(rng, 200))
    _write(root, "home/user/projects/agent/src/main.py", "def main():\n    return 0\n" * 50)
    _write(
        root,
        "var/log/syslog",
        "".join(f"Nov 22 03:{i % 60:02d}:00 host cron[{i}]: job ok\n" for i in range(3000)),
    )
    blob = rng.randbytes(data_bytes)
    _write(root, "data/blob.bin", blob)
    # A copy of part of the blob: dedup should store those bytes once.
    _write(root, "data/blob-copy.bin", blob[: data_bytes // 3])
    (root / "tmp").mkdir(exist_ok=True)
    if marker is None:
        return None
    _write(root, "home/user/marker.bin", rng.randbytes(1000) + marker + rng.randbytes(1000))
    return "/home/user/marker.bin"


# ---------------------------------------------------------------------------------------
# Build and change


def build_sample_image(
    path: str | os.PathLike,
    *,
    size_mib: int = 64,
    esp_mib: int = 16,
    marker: bytes | None = None,
    seed: int = 0,
) -> ImageInfo:
    """A sparse GPT image: p1 EFI System (FAT), p2 Linux filesystem (ext4), free tail.

    The same seed gives the same partition GUIDs, volume ids and file contents (timestamps
    still differ), so two builds deduplicate against each other as a reinstalled disk would.
    """
    require_tools()
    path = Path(path)
    rng = random.Random(seed)
    tail_mib = max(2, size_mib // 8)
    root_mib = size_mib - ALIGN_MIB - esp_mib - tail_mib
    if esp_mib < 1 or root_mib < 8:
        raise ValueError(f"{size_mib} MiB is too small for a {esp_mib} MiB ESP plus an ext4 root")
    size = size_mib * MIB
    esp = PartInfo(1, ALIGN_MIB * MIB, esp_mib * MIB, "vfat", "ESP")
    root = PartInfo(2, esp.start + esp.size, root_mib * MIB, "ext4", "root")

    def guid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    _run(
        "sgdisk",
        f"--disk-guid={guid()}",
        f"--new=1:{esp.start // 512}:{(esp.start + esp.size) // 512 - 1}",
        f"--typecode=1:{ESP_TYPE}",
        "--change-name=1:EFI system partition",
        f"--partition-guid=1:{guid()}",
        f"--new=2:{root.start // 512}:{(root.start + root.size) // 512 - 1}",
        f"--typecode=2:{LINUX_TYPE}",
        "--change-name=2:Linux root",
        f"--partition-guid=2:{guid()}",
        path,
    )

    with tempfile.TemporaryDirectory(prefix="diskimage-") as tmp:
        tmp = Path(tmp)
        esp_tree, root_tree = tmp / "esp", tmp / "root"
        esp_tree.mkdir()
        root_tree.mkdir()
        _esp_tree(esp_tree, rng)
        data_bytes = min(3 * MIB, root.size // 8)
        marker_path = _root_tree(root_tree, rng, data_bytes, marker)

        fat = tmp / "esp.fat"
        _run(
            "mkfs.vfat",
            "-C",
            "-n",
            esp.label,
            "-i",
            f"{rng.getrandbits(32):08x}",
            fat,
            str(esp.size // 1024),
        )
        _run("mcopy", "-s", "-m", "-i", fat, *sorted(esp_tree.iterdir()), "::/")

        ext = tmp / "root.ext4"
        with open(ext, "wb") as f:
            f.truncate(root.size)
        _run(
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            root.label,
            "-U",
            guid(),
            "-E",
            f"hash_seed={guid()}",
            "-d",
            root_tree,
            ext,
        )

        copy_sparse(fat, path, esp.start)
        copy_sparse(ext, path, root.start)
    return ImageInfo(path, size, (esp, root), marker_path)


def inspect_image(path: str | os.PathLike) -> ImageInfo:
    """Recover ImageInfo from an image built earlier (the `change` CLI has only the path)."""
    from agent.source.partitions import read_partition_table

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        table = read_partition_table(lambda off, n: os.pread(f.fileno(), n, off), size)
    parts = tuple(
        PartInfo(p.number, p.start, p.size, p.filesystem or "", p.fs_label or "")
        for p in table.partitions
    )
    if table.scheme != "gpt" or [p.filesystem for p in parts] != ["vfat", "ext4"]:
        raise ValueError(f"{path} does not look like an image from build_sample_image")
    return ImageInfo(path, size, parts, None)


def change_image(
    path: str | os.PathLike, info: ImageInfo | None = None, *, seed: int = 1
) -> list[str]:
    """Change files as a user would between two nightly backups; returns what changed.

    ESP: overwrite grub.cfg and add a file (mcopy on image@@offset). ext4: write a new file
    with debugfs on image?offset=N, then overwrite 64 KiB inside /data/blob.bin in place (its
    physical blocks come from debugfs `blocks`; ext4 keeps no checksums on file data).
    """
    require_tools("mcopy", "debugfs")
    path = Path(path)
    info = info or inspect_image(path)
    rng = random.Random(seed)
    changes: list[str] = []
    dev = _ext_device(path, info.root)

    with tempfile.TemporaryDirectory(prefix="diskimage-") as tmp:
        tmp = Path(tmp)
        fat = f"{path}@@{info.esp.start}"
        cfg = tmp / "grub.cfg"
        cfg.write_text(f"set timeout={rng.randint(1, 9)}\n# edited, seed {seed}\n" + _text(rng, 5))
        _run("mcopy", "-o", "-i", fat, cfg, "::/EFI/BOOT/grub.cfg")
        changes.append(f"p1: overwrote /EFI/BOOT/grub.cfg ({cfg.stat().st_size} bytes)")
        new_fat = tmp / f"NEW{seed % 100000}.TXT"
        new_fat.write_text(_text(rng, 40))
        _run("mcopy", "-o", "-i", fat, new_fat, f"::/{new_fat.name}")
        changes.append(f"p1: added /{new_fat.name} ({new_fat.stat().st_size} bytes)")

        new_ext = tmp / "new.bin"
        new_ext.write_bytes(rng.randbytes(256 << 10))
        dest = f"/home/user/download-{seed}.bin"
        existing = _debugfs(dev, [f"ls -p {os.path.dirname(dest)}"])
        rm = [f"rm {dest}"] if f"/{os.path.basename(dest)}/" in existing else []
        _debugfs(dev, [*rm, f"write {new_ext} {dest}"], write=True)
        changes.append(f"p2: wrote {dest} ({new_ext.stat().st_size} bytes)")

    target = "/data/blob.bin"
    blocks = [int(b) for b in _debugfs(dev, [f"blocks {target}"]).split() if b.isdigit()]
    with open(path, "r+b") as f:
        sb = os.pread(f.fileno(), 1024, info.root.start + 1024)
        block_size = 1024 << int.from_bytes(sb[24:28], "little")
        span = max(1, (64 << 10) // block_size)
        if len(blocks) < span:
            raise ToolFailed(f"{target} has too few blocks ({len(blocks)}) to modify")
        first = rng.randrange(0, len(blocks) - span + 1)
        for phys in blocks[first : first + span]:
            os.pwrite(f.fileno(), rng.randbytes(block_size), info.root.start + phys * block_size)
    _debugfs(dev, [f"sif {target} mtime @{int(time.time())}"], write=True)  # as an editor would
    changes.append(
        f"p2: overwrote {span * block_size} bytes of {target} at offset {first * block_size}"
    )
    return changes


# ---------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.diskimage", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a sample GPT image (ESP + ext4)")
    b.add_argument("out")
    b.add_argument("--size-mib", type=int, default=64)
    b.add_argument("--esp-mib", type=int, default=16)
    b.add_argument("--marker", help="text to embed in a file on the ext4 partition")
    b.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("change", help="modify files in both partitions of an image")
    c.add_argument("image")
    c.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            info = build_sample_image(
                args.out,
                size_mib=args.size_mib,
                esp_mib=args.esp_mib,
                marker=args.marker.encode() if args.marker else None,
                seed=args.seed,
            )
            parts = ", ".join(
                f"p{p.number} {p.filesystem} '{p.label}' {p.size // MIB} MiB @ {p.start // MIB} MiB"
                for p in info.partitions
            )
            print(f"built {info.path} ({info.size // MIB} MiB GPT): {parts}")
        else:
            print(f"changed {args.image}: " + "; ".join(change_image(args.image, seed=args.seed)))
    except (MissingTool, ToolFailed, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
