"""The external tools a resize or format conversion runs (sgdisk, sfdisk, resize2fs, qemu-img, ...).

They are checked before anything is written, so a missing one is a refusal naming its Debian package
rather than a half-finished target; a failing one becomes a TargetError carrying the tool's own words.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from agent.errors import TargetError

#: tool -> the Debian/Ubuntu package that provides it
PACKAGES = {
    "sgdisk": "gdisk",
    "sfdisk": "fdisk",
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "ntfsresize": "ntfs-3g",
    "xfs_growfs": "xfsprogs",
    "xfs_repair": "xfsprogs",
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "qemu-img": "qemu-utils",
}


class ToolFailed(TargetError):
    """An external tool exited with an error while fixing up or converting the target."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # sbin is often missing from a user's PATH; C.UTF-8 keeps the output parseable and names intact
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
    env["LC_ALL"] = "C.UTF-8"
    return env


def require(names: set[str], why: str) -> None:
    """TargetError naming every missing tool and its package; called before the target is touched."""
    path = _env()["PATH"]
    missing = sorted(n for n in names if shutil.which(n, path=path) is None)
    if missing:
        pkgs = " ".join(sorted({PACKAGES.get(n, n) for n in missing}))
        raise TargetError(f"{why} needs {', '.join(missing)}, which is not installed",
                          hint=f"install it (apt-get install {pkgs}) and run the restore again")


def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool with no terminal input; ToolFailed with its last lines of output when it fails."""
    proc = subprocess.run(list(args), capture_output=True, text=True, env=_env(),
                          input=stdin if stdin is not None else "", errors="replace")
    if check and proc.returncode != 0:
        raise ToolFailed(f"{args[0]} failed ({proc.returncode}): {last_lines(proc)}")
    return proc


def last_lines(proc: subprocess.CompletedProcess[str], n: int = 3) -> str:
    lines = [ln.strip() for ln in (proc.stderr.strip() or proc.stdout).splitlines() if ln.strip()]
    return " / ".join(lines[-n:]) or "no output"
