"""Grow the filesystem of an extended partition to fill it, each with its own tool, checked before and
after: ext2/3/4 with resize2fs (e2fsck -fn around it), NTFS with ntfsresize, XFS with xfs_growfs.

Each tool gets a block device of its own at the partition's offset: a loop device, so root. (resize2fs
on e2fsprogs' `FILE?offset=N` would truncate or extend FILE to the filesystem's size, offset ignored,
cutting off the end of the disk.) XFS also grows only while mounted.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from agent.restore.loopdev import is_root, loop_device
from agent.restore.tools import ToolFailed, last_lines, run

_EXT = ("ext2", "ext3", "ext4")
#: filesystem -> the tools growing it
TOOLS = {**{fs: {"e2fsck", "resize2fs", "losetup"} for fs in _EXT}, "ntfs": {"ntfsresize", "losetup"},
         "xfs": {"xfs_growfs", "xfs_repair", "losetup", "mount", "umount"}}


@dataclass(frozen=True)
class Grown:
    grown: bool
    note: str  # what was done, or what is left to do by hand


def growable(fs: str | None) -> bool:
    return fs in TOOLS


def grow_filesystem(path: str, start: int, size: int, fs: str | None, part: str) -> Grown:
    """Grow filesystem `fs` in bytes [start, start + size) of `path` (partition `part`, for messages).
    A filesystem that is unclean or cannot be grown here is left as it was, with a note on what to do."""
    if not growable(fs):
        return Grown(False, f"partition {part} was extended; its {fs or 'unknown'} filesystem is not grown by agent "
                            "(ext2/3/4, NTFS and XFS are): grow it with its own tool")
    if not is_root():  # refused before the restore (agent.restore.anywhere); said again for other callers
        return Grown(False, f"partition {part} was extended; growing its {fs} filesystem needs root (a loop device): "
                            "run the restore as root, or grow it where the disk is used")
    if fs == "ntfs":
        return _grow_ntfs(path, start, size, part)
    if fs == "xfs":
        return _grow_xfs(path, start, size, part)
    return _grow_ext(path, start, size, str(fs), part)


def _grow_ext(path: str, start: int, size: int, fs: str, part: str) -> Grown:
    with loop_device(path, start, size) as dev:
        before = run("e2fsck", "-fn", dev, check=False)
        if before.returncode != 0:
            return Grown(False, f"partition {part} was extended, but its {fs} filesystem was not grown: `e2fsck -fn` "
                                f"found problems ({last_lines(before, 1)}); run `e2fsck -f` and `resize2fs` on it")
        # -f: the check just passed (a read-only check leaves the last-check time as it was)
        run("resize2fs", "-f", dev)
        after = run("e2fsck", "-fn", dev, check=False)
        if after.returncode != 0:
            raise ToolFailed(f"e2fsck -fn reports problems in partition {part} after resize2fs: {last_lines(after)}")
    return Grown(True, f"grew the {fs} filesystem of partition {part} to fill it (resize2fs; e2fsck -fn clean)")


def _grow_ntfs(path: str, start: int, size: int, part: str) -> Grown:
    with loop_device(path, start, size) as dev:
        check = run("ntfsresize", "--check", "--force", dev, check=False)
        if check.returncode != 0:
            return Grown(False, f"partition {part} was extended, but its ntfs filesystem was not grown: ntfsresize "
                                f"--check failed ({last_lines(check, 1)}); run chkdsk in Windows, then ntfsresize")
        # no size: to the device's; --force twice skips the question (stdin is empty anyway)
        run("ntfsresize", "--force", "--force", "--no-progress-bar", dev)
        run("ntfsresize", "--check", "--force", dev)
    return Grown(True, f"grew the ntfs filesystem of partition {part} to fill it (ntfsresize; Windows runs chkdsk "
                       "once at the next boot)")


def _grow_xfs(path: str, start: int, size: int, part: str) -> Grown:
    with loop_device(path, start, size) as dev:
        check = run("xfs_repair", "-n", dev, check=False)
        if check.returncode != 0:
            return Grown(False, f"partition {part} was extended, but its xfs filesystem was not grown: xfs_repair -n "
                                f"found problems ({last_lines(check, 1)}); mount it once (replays the log), then "
                                "run xfs_growfs on the mount point")
        with tempfile.TemporaryDirectory(prefix="agent-grow-") as mnt:
            # nouuid: the machine may have the original of this filesystem mounted
            mounted = run("mount", "-t", "xfs", "-o", "nouuid", dev, mnt, check=False)
            if mounted.returncode != 0:
                return Grown(False, f"partition {part} was extended, but its xfs filesystem was not grown: XFS grows "
                                    f"only while mounted and mounting failed ({last_lines(mounted, 1)}); mount it "
                                    "where the disk is used and run `xfs_growfs MOUNTPOINT`")
            try:
                run("xfs_growfs", mnt)
            finally:
                run("umount", mnt, check=False)
        run("xfs_repair", "-n", dev)
    return Grown(True, f"grew the xfs filesystem of partition {part} to fill it (xfs_growfs; xfs_repair -n clean)")


def required_tools(fs: str | None) -> set[str]:
    return set(TOOLS.get(fs or "", set()))

