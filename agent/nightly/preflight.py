"""What `agent config check` verifies beyond the file itself: each source can be opened for reading
by the user running the check, as the nightly run will open it. A typo in a device path otherwise
shows up as a failed night."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it passed, and why (never a secret)."""

    check: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


def check_source(name: str, path: str, *, has_pre_hook: bool = False) -> Check:
    """Open `path` read-only (a device or an image file). A source with a pre hook may not exist until
    the hook has made it (an LVM snapshot), so its absence is reported but not a failure."""
    label = f"source {name}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if has_pre_hook:
            return Check(label, True, f"{path} does not exist now; its pre hook is expected to create it")
        dangling = os.path.islink(path)
        return Check(label, False, f"{path} does not exist" + (" (a symlink to a missing target)" if dangling else ""))
    except OSError as exc:
        return Check(label, False, f"{path} cannot be examined: {exc.strerror}")
    if stat.S_ISDIR(st.st_mode):
        return Check(label, False, f"{path} is a directory; a source is a block device or a disk image file")
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return Check(label, False, f"{path} is neither a block device nor a regular file")
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
    except OSError as exc:
        return Check(label, False, f"{path} cannot be opened for reading: {exc.strerror}")
    kind = "block device" if stat.S_ISBLK(st.st_mode) else "image file"
    return Check(label, True, f"{path} ({kind}, readable)")
