"""`backup --system`: the disk that holds the running system and its system partitions, the way
the imagers' "System Backup" picks them: the filesystems mounted at /, /boot and /boot/efi, and
the disk's EFI system and BIOS boot partitions.

The kernel says where each mount lives (/proc/self/mountinfo gives its device number; sysfs
gives a partition's disk and start, a device-mapper volume's underlying devices (LVM, LUKS),
and a loop device's backing file and offset). A root on a loop device at an offset of an image
file counts as that image's partition: that is how this is tested without a spare disk, and
how a VM image attached that way is backed up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.errors import SourceError
from agent.source.partitions import read_partition_table

_MOUNTS = ("", "boot", "boot/efi")
_SYSTEM_TYPES = frozenset({"EFI System", "BIOS boot"})


@dataclass(frozen=True)
class SystemDisk:
    path: str  # the disk device (or image file) to back up
    partitions: list[str]  # their numbers, as `backup --partitions` takes them
    found: list[str]  # what was found, for the output: "/ on partition 2 (ext4)"


def _mount_devices(root: Path, mountinfo: str) -> dict[str, str]:
    """{mount point relative to root: "major:minor"} for root, root/boot and root/boot/efi (the last
    mount at a point wins: it is the one visible)."""
    wanted = {os.path.normpath(root / rel) if rel else os.path.normpath(root): rel for rel in _MOUNTS}
    found: dict[str, str] = {}
    for line in mountinfo.splitlines():
        parts = line.split()
        if len(parts) > 4:
            point = parts[4].replace("\\040", " ")
            if point in wanted:
                found[wanted[point]] = parts[2]
    return found


def _backing(majmin: str, sys_block: Path) -> list[tuple[str, int]]:
    """(disk path, byte offset of the partition in it) for a device number: a partition gives its
    disk, a loop device its backing file, a device-mapper volume what it is built on."""
    dev = sys_block / majmin
    try:
        real = dev.resolve(strict=True)
    except OSError:
        return []
    slaves = real / "slaves"
    if slaves.is_dir() and any(slaves.iterdir()):
        out: list[tuple[str, int]] = []
        for slave in sorted(slaves.iterdir()):
            try:
                out.extend(_backing((slave / "dev").read_text().strip(), sys_block))
            except OSError:
                continue
        return out
    loop = real / "loop"
    if loop.is_dir():
        try:
            backing = (loop / "backing_file").read_text().strip()
            offset = int((loop / "offset").read_text().strip() or 0)
        except (OSError, ValueError):
            return []
        return [(backing, offset)]
    if (real / "partition").is_file():
        try:
            start = int((real / "start").read_text().strip()) * 512
        except (OSError, ValueError):
            return []
        return [(f"/dev/{real.parent.name}", start)]
    return [(f"/dev/{real.name}", 0)]


def find_system(root: Path = Path("/"), mountinfo: str | None = None,
                sys_block: Path = Path("/sys/dev/block")) -> SystemDisk:
    """The disk holding the filesystem mounted at `root` and its system partitions; SourceError when
    the root is not on a disk this can back up (a container's overlay, a network filesystem)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    mounts = _mount_devices(root, mountinfo)
    if "" not in mounts:
        raise SourceError(f"no filesystem is mounted at {root}")
    homes = _backing(mounts[""], sys_block)
    if not homes:
        raise SourceError(f"the root filesystem ({mounts['']}) is not on a disk (an overlay, tmpfs or network "
                          "filesystem, as in a container)", hint="name the disk to back up instead of --system")
    disks = {path for path, _ in homes}
    if len(disks) > 1:
        raise SourceError(f"the root filesystem spans several disks ({', '.join(sorted(disks))})",
                          hint="back up each disk by name")
    disk = homes[0][0]
    starts: dict[int, str] = {}
    for rel in _MOUNTS:
        for path, start in _backing(mounts[rel], sys_block) if rel in mounts else []:
            if path == disk:
                starts[start] = "/" + rel
    try:
        fd = os.open(disk, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SourceError(f"cannot open the system disk {disk}: {exc.strerror}") from None
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        table = read_partition_table(lambda off, n: os.pread(fd, n, off), size)
    finally:
        os.close(fd)
    if table.scheme == "none":  # a filesystem on the whole disk: that disk is the system
        return SystemDisk(disk, [], [f"/ on {disk} (no partition table)"])
    chosen: list[str] = []
    found: list[str] = []
    for p in table.partitions:
        why = starts.get(p.start) or (p.type_name if p.type_name in _SYSTEM_TYPES else None)
        if why:
            chosen.append(str(p.number))
            found.append(f"{why} on partition {p.number} ({p.filesystem or p.type_name})")
    if not any(p.start in starts for p in table.partitions):
        raise SourceError(f"the root filesystem's partition was not found in {disk}'s partition table")
    return SystemDisk(disk, chosen, found)
