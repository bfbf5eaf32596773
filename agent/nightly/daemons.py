"""Is a scheduler actually running? A cron.d entry or a timer unit on a system whose cron daemon or
systemd is not running never fires, and nothing says so until the first missed night.

Everything is read under a root directory (normally "/": /run and /proc), so tests and image
builds can point it at a prepared tree.
"""

from __future__ import annotations

from pathlib import Path

#: process names of cron daemons: Debian's cron; cronie's, dcron's and busybox's crond; fcron; bcron
CRON_DAEMONS = frozenset({"cron", "crond", "cronie", "fcron", "dcron", "bcron-sched"})
_BUSYBOX = frozenset({"busybox"})


def systemd_running(root: Path) -> bool:
    """systemd is PID 1: sd_booted()'s own test (/run/systemd/system), or /proc/1/comm when /run is not
    shared (a container with its own /run)."""
    if (root / "run/systemd/system").is_dir():
        return True
    return _read(root / "proc/1/comm") == "systemd"


def cron_daemon(root: Path) -> str | None:
    """The name of a running cron daemon, or None. `busybox crond` runs under the name busybox:
    its command line says which applet it is."""
    proc = root / "proc"
    try:
        entries = list(proc.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        comm = _read(entry / "comm")
        if comm in CRON_DAEMONS:
            return comm
        if comm in _BUSYBOX:
            argv = (_read(entry / "cmdline") or "").split("\0")
            if len(argv) > 1 and argv[1] in CRON_DAEMONS:
                return f"busybox {argv[1]}"
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:  # the process exited meanwhile, or no such file
        return None
