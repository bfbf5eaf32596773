"""Each filesystem's own checker, run read-only, and what its exit status says.

The checkers are the ones the filesystems' maintainers ship, in their no-change modes: nothing
the agent could write about ext4 or NTFS would know as much, and a snapshot is read-only anyway.
Every checker here exits 0 for a clean filesystem and non-zero for a damaged one or one it could
not read (its last lines say which).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

_LAST_LINES = 10


@dataclass(frozen=True)
class Checker:
    argv: tuple[str, ...]  # the image file is appended
    package: str  # Debian package that provides it, for the "not installed" reason

    @property
    def command(self) -> str:
        return " ".join(self.argv)


_E2FSCK = Checker(("e2fsck", "-fn"), "e2fsprogs")
CHECKERS: dict[str, Checker] = {
    "ext2": _E2FSCK, "ext3": _E2FSCK, "ext4": _E2FSCK,
    "vfat": Checker(("fsck.fat", "-n"), "dosfstools"),
    "exfat": Checker(("fsck.exfat", "-n"), "exfatprogs"),
    "ntfs": Checker(("ntfsfix", "-n"), "ntfs-3g"),
    "xfs": Checker(("xfs_repair", "-n", "-f"), "xfsprogs"),  # -f: the device is a file
}

_UNCHECKABLE = {
    "LUKS": "encrypted (LUKS): the checker needs the unlocked volume; restore it and check it after "
            "`cryptsetup open`",
    "BitLocker": "encrypted (BitLocker): the checker needs the unlocked volume",
    "swap": "swap space holds no filesystem",
    "LVM2 PV": "an LVM physical volume: the filesystems in its logical volumes are not checked",
    "jbd": "an external ext3/ext4 journal: checked with the filesystem that uses it",
}


def _path() -> str:
    """sbin too: the checkers live there and a normal user's PATH often lacks it."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def choose(filesystem: str | None) -> tuple[Checker | None, str | None]:
    """(the checker, None), or (None, why this partition is not checked)."""
    if not filesystem:
        return None, "no filesystem recognised"
    if filesystem in _UNCHECKABLE:
        return None, _UNCHECKABLE[filesystem]
    checker = CHECKERS.get(filesystem)
    if checker is None:
        return None, f"no read-only checker is run for {filesystem}"
    if shutil.which(checker.argv[0], path=_path()) is None:
        return None, f"{checker.argv[0]} is not installed (apt-get install {checker.package})"
    return checker, None


def run(checker: Checker, image: str) -> tuple[int, list[str]]:
    """(exit status, last lines of its output). stdin is closed, so nothing can wait for an answer."""
    env = {**os.environ, "PATH": _path(), "LC_ALL": "C"}
    proc = subprocess.run([*checker.argv, image], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, check=False)
    lines = [ln.rstrip() for ln in proc.stdout.decode(errors="replace").splitlines() if ln.strip()]
    return proc.returncode, lines[-_LAST_LINES:]
