"""Run `agent run` every night: a systemd timer where systemd runs, else a cron.d entry.

Two runs never overlap: systemd never starts an active oneshot service twice, the cron line holds
`flock -n`, and `agent run` itself takes a run lock. All paths hang off `Locations.root` ("/" in real
use) so tests can install into a temporary tree; with a root other than "/" systemctl works offline
(`--root`), as when preparing an image.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.errors import AgentError, UsageError
from agent.nightly import daemons

NAME = "agent-backup"
SERVICE, TIMER = f"{NAME}.service", f"{NAME}.timer"
LOCK_FILE = "/run/lock/agent-backup.lock"
_BUSY = 75  # flock's exit status when the previous run still holds the lock (EX_TEMPFAIL)
_HEADER = "# Installed by `agent schedule install`; remove with `agent schedule remove`. Edits are overwritten.\n"


@dataclass(frozen=True)
class Schedule:
    config_path: str                 # absolute path of the agent.toml the run uses
    at: str = "01:00"                # local wall-clock time HH:MM
    randomized_delay_s: int = 900    # spread hosts sharing one repository or uplink
    environment_file: str | None = None
    command: list[str] = field(default_factory=lambda: agent_command())
    lock_file: str = LOCK_FILE       # cron only: systemd never starts an active oneshot twice
    passphrase_file: str | None = None  # system unit: handed over with LoadCredential=
    writable: tuple[str, ...] = ()   # system unit: paths the run writes besides its cache and state (local repos)


@dataclass(frozen=True)
class Locations:
    root: Path = Path("/")
    user: bool = False               # a systemd --user timer instead of a system one

    @property
    def systemd_dir(self) -> Path:
        if not self.user:
            return self.root / "etc/systemd/system"
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        return self.root / config_home.relative_to("/") / "systemd/user"

    @property
    def cron_file(self) -> Path:
        return self.root / "etc/cron.d" / NAME

    @property
    def systemd_running(self) -> bool:
        return daemons.systemd_running(self.root)

    @property
    def cron_daemon(self) -> str | None:
        return daemons.cron_daemon(self.root)

    def scheduler_running(self, scheduler: str | None) -> bool:
        """Whether the installed schedule can fire now (`status` shows no next run otherwise)."""
        if scheduler == "cron":
            return self.cron_daemon is not None
        return scheduler is not None and self.systemd_running

    @property
    def live(self) -> bool:
        """True when systemctl can talk to the running manager about these files."""
        return self.systemd_running and self.root == Path("/")


def agent_command() -> list[str]:
    """How the unit or cron line starts this agent. Absolute but symlinks kept: a venv's python and a
    /usr/local/bin/agent link must survive upgrades of what they point to."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "agent" and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    if os.path.basename(argv0) == "__main__.py":  # python -m agent
        return [os.path.abspath(sys.executable), "-m", "agent"]
    found = shutil.which("agent")
    return [os.path.abspath(found)] if found else [os.path.abspath(sys.executable), "-m", "agent"]


def parse_at(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m[1]) > 23 or int(m[2]) > 59:
        raise UsageError(f"cannot read the time of day {text!r}; use HH:MM, e.g. 01:00")
    return int(m[1]), int(m[2])


def parse_delay(text: str) -> int:
    """Seconds from `15m`, `1h`, `90s`, `1h30m` or a bare number of seconds (`0` turns it off)."""
    from agent.config.durations import parse_duration

    t = text.strip()
    return int(t) if t.isdigit() else int(parse_duration(t, what="delay").total_seconds())


# ---- rendering --------------------------------------------------------------------------------------

def run_argv(s: Schedule, *, quiet: bool = False) -> list[str]:
    # --config and --quiet are global options, so they go before the command
    return [*s.command, *(["--quiet"] if quiet else []), "--config", s.config_path, "run"]


def render_service(s: Schedule, *, user: bool = False) -> str:
    # no secrets here: units are world-readable; they live in the config file or the EnvironmentFile
    net = "" if user else "Wants=network-online.target\nAfter=network-online.target\n"
    env = f"EnvironmentFile={_systemd_escape(s.environment_file)}\n" if s.environment_file else ""
    argv = [_systemd_arg(a) for a in run_argv(s)]
    if s.passphrase_file and not user:  # a flag: it wins over the config file's passphrase_file (the same file)
        argv[len(s.command):len(s.command)] = ["--passphrase-file", "%d/passphrase"]
    return (f"{_HEADER}[Unit]\nDescription=agent nightly backup\n{net}\n"
            "[Service]\nType=oneshot\n"
            f"ExecStart={' '.join(argv)}\n{env}"
            "Nice=19\nIOSchedulingClass=idle\nCPUSchedulingPolicy=batch\n"
            + ("" if user else _hardening(s)))


def _hardening(s: Schedule) -> str:
    """A system service sees the system read-only except where the run writes: its cache and state
    (systemd creates them), local repositories and what the config names. Devices stay visible (a backup
    reads disks; pre hooks make LVM snapshots, hence LVM's lock and metadata dirs). User units get none
    of this: an unprivileged manager cannot set up these namespaces."""
    writable = ["-/run/lock", "-/run/lvm", "-/etc/lvm/archive", "-/etc/lvm/backup", *(f"-{p}" for p in s.writable)]
    cred = ""
    if s.passphrase_file:
        cred = (f"LoadCredential=passphrase:{_systemd_escape(s.passphrase_file)}\n"
                "Environment=AGENT_PASSPHRASE_FILE=%d/passphrase\n")
    return ("ProtectSystem=strict\nProtectHome=read-only\nPrivateTmp=yes\nNoNewPrivileges=yes\n"
            "PrivateDevices=no\nProtectKernelTunables=yes\nProtectControlGroups=yes\nRestrictSUIDSGID=yes\n"
            "CacheDirectory=agent\nStateDirectory=agent\nEnvironment=AGENT_CACHE_DIR=%C/agent\n"
            f"ReadWritePaths={' '.join(_systemd_arg(p) for p in writable)}\n{cred}")


def render_timer(s: Schedule) -> str:
    h, m = parse_at(s.at)
    delay = f"RandomizedDelaySec={s.randomized_delay_s}\n" if s.randomized_delay_s else ""
    return (f"{_HEADER}[Unit]\nDescription=Nightly run of {SERVICE}\n\n"
            f"[Timer]\nOnCalendar=*-*-* {h:02d}:{m:02d}:00\nPersistent=true\n{delay}\n"
            "[Install]\nWantedBy=timers.target\n")


def cron_time(s: Schedule, host: str) -> tuple[int, int]:
    """cron has no random delay: shift the time by a fixed per-host offset within the delay instead,
    which spreads hosts just as well and keeps `status` exact."""
    h, m = parse_at(s.at)
    span = s.randomized_delay_s // 60
    offset = int(hashlib.sha256(host.encode()).hexdigest(), 16) % (span + 1) if span else 0
    total = (h * 60 + m + offset) % 1440
    return total // 60, total % 60


def render_cron(s: Schedule, host: str | None = None) -> str:
    """A cron.d file: output to syslog (tag `agent`) rather than cron mail, since the run's own
    notifications do the alerting; --quiet keeps the log to errors and results."""
    h, m = cron_time(s, host or socket.gethostname())
    run = " ".join(_cron_arg(a) for a in run_argv(s, quiet=True))
    env = f"set -a; . {_cron_arg(s.environment_file)}; set +a; " if s.environment_file else ""
    body = (f"{{ {env}flock -n -E {_BUSY} {_cron_arg(s.lock_file)} {run}; "
            f"[ $? -ne {_BUSY} ] || echo 'the previous run is still active; this run was skipped'; }}"
            " 2>&1 | logger -t agent")
    return (f"{_HEADER}SHELL=/bin/sh\n"
            "# sbin too: hooks call lvcreate, zfs, ... (cron's default PATH is only /usr/bin:/bin)\n"
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            f"{m} {h} * * * root {body}\n")


def _systemd_arg(a: str) -> str:
    _no_newline(a)
    a = a.replace("%", "%%").replace("$", "$$")  # specifier and variable expansion
    return a if re.fullmatch(r"[\w@%+=:,./-]+", a) else '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd_escape(a: str) -> str:
    _no_newline(a)
    return a.replace("%", "%%")


def _cron_arg(a: str) -> str:
    import shlex

    _no_newline(a)
    return shlex.quote(a).replace("%", "\\%")  # cron turns a bare % into a newline


def _no_newline(a: str) -> None:
    if "\n" in a or "\r" in a:
        raise UsageError(f"a line break in {a!r} cannot go into a unit or crontab")


# ---- files and systemctl ----------------------------------------------------------------------------

def write_file(path: Path, text: str) -> bool:
    """Atomically write `text` with mode 0644; False when the file already had exactly this content."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == 0o644:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            os.fchmod(f.fileno(), 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def systemctl(loc: Locations, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`systemctl [--user] ARGS` against the running manager, or `systemctl --root=ROOT ARGS` offline."""
    if loc.live:
        argv = ["systemctl", *(["--user"] if loc.user else []), *args]
    elif loc.user:
        raise UsageError("systemd is not running here, so there is no user manager for a --user timer")
    else:
        argv = ["systemctl", f"--root={loc.root}", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(f"`{' '.join(argv)}` could not run: {exc}") from None
    if check and proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())
        raise AgentError(f"`{' '.join(argv)}` failed (exit status {proc.returncode}): {detail}")
    return proc


# ---- reading back what is installed -----------------------------------------------------------------

def installed(loc: Locations) -> dict:
    """{"scheduler": "systemd" | "systemd-user" | "cron" | None, "files": [...], "at", "randomized_delay_s"}."""
    unit, timer = loc.systemd_dir / SERVICE, loc.systemd_dir / TIMER
    if timer.exists() or unit.exists():
        at, delay = _timer_time(timer)
        return {"scheduler": "systemd-user" if loc.user else "systemd",
                "files": [str(p) for p in (unit, timer) if p.exists()], "at": at, "randomized_delay_s": delay}
    if not loc.user and loc.cron_file.exists():
        m = re.search(r"^(\d+) (\d+) \* \* \* ", loc.cron_file.read_text(errors="replace"), re.M)
        at = f"{int(m[2]):02d}:{int(m[1]):02d}" if m else None
        return {"scheduler": "cron", "files": [str(loc.cron_file)], "at": at, "randomized_delay_s": 0}
    return {"scheduler": None, "files": [], "at": None, "randomized_delay_s": 0}


def _timer_time(timer: Path) -> tuple[str | None, int]:
    try:
        text = timer.read_text(errors="replace")
    except FileNotFoundError:
        return None, 0
    m = re.search(r"^OnCalendar=\*-\*-\* (\d{2}):(\d{2}):00\s*$", text, re.M)
    d = re.search(r"^RandomizedDelaySec=(\d+)\s*$", text, re.M)
    return (f"{m[1]}:{m[2]}" if m else None), (int(d[1]) if d else 0)


def next_run(loc: Locations, info: dict, now: datetime | None = None) -> datetime | None:
    """From systemd when it runs the timer (it knows about Persistent catch-up), else computed from
    the installed time (the earliest moment; a timer may add up to its randomized delay)."""
    if info["scheduler"] in ("systemd", "systemd-user") and loc.live:
        proc = systemctl(loc, "show", TIMER, "-p", "NextElapseUSecRealtime", "--value", "--timestamp=unix",
                         check=False)
        m = re.fullmatch(r"@(\d+)", proc.stdout.strip())
        if proc.returncode == 0 and m:
            return datetime.fromtimestamp(int(m[1]), UTC)
    if not info["at"]:
        return None
    h, minute = parse_at(info["at"])
    local = (now or datetime.now(UTC)).astimezone().replace(tzinfo=None)
    at = local.replace(hour=h, minute=minute, second=0, microsecond=0)
    return (at if at > local else at + timedelta(days=1)).astimezone()  # naive + 1 day: right across DST


# ---- install and remove -----------------------------------------------------------------------------

def choose_scheduler(loc: Locations, scheduler: str = "auto") -> str:
    """"systemd" or "cron": systemd where it runs (always for --user), else cron if it is installed."""
    if scheduler == "auto":
        scheduler = "systemd" if loc.systemd_running or loc.user else "cron"
    if scheduler == "systemd" and loc.user and not loc.live:
        raise UsageError("systemd is not running here, so there is no user manager for a --user timer")
    if scheduler == "cron":
        if loc.user:
            raise UsageError("--user installs a systemd user timer; cron.d entries always run as root",
                             hint="for a per-user cron job, add `agent --config ... run` with `crontab -e`")
        if not loc.cron_file.parent.is_dir():
            raise UsageError(f"systemd is not running and {loc.cron_file.parent} does not exist: no cron to use",
                             hint="install cron (e.g. apt-get install cron), or run this on a systemd host")
        if loc.cron_daemon is None:
            raise UsageError(f"no cron daemon is running (none of {', '.join(sorted(daemons.CRON_DAEMONS))} in "
                             f"{loc.root / 'proc'}) and systemd is not PID 1: an entry in {loc.cron_file.parent} "
                             "would never run", hint="start cron (e.g. `service cron start`, and enable it at boot), "
                             "then install again; for an image that boots systemd, use --systemd")
    return scheduler


def install(s: Schedule, loc: Locations, scheduler: str = "auto") -> dict:
    """Write and enable the schedule (idempotent), replacing one installed for the other scheduler so
    two never run side by side. {"scheduler", "files", "changed", "replaced", "notes"}."""
    kind = choose_scheduler(loc, scheduler)
    notes: list[str] = []
    if kind == "cron":
        replaced = _remove_systemd(loc)
        files = [loc.cron_file]
        changed = write_file(loc.cron_file, render_cron(s))
    else:
        replaced = [] if loc.user else _remove_cron(loc)
        files = [loc.systemd_dir / SERVICE, loc.systemd_dir / TIMER]
        changed = write_file(files[0], render_service(s, user=loc.user))
        changed = write_file(files[1], render_timer(s)) or changed
        if loc.live:
            systemctl(loc, "daemon-reload")
            systemctl(loc, "enable", TIMER)
            systemctl(loc, "restart" if changed else "start", TIMER)  # a running timer keeps its old time
            if loc.user:
                notes.append("user timers only run while you are logged in, unless lingering is on: "
                             "`loginctl enable-linger`")
        else:
            systemctl(loc, "enable", TIMER)
            notes.append("systemd is not running here: the timer is enabled and starts at the next boot")
    return {"scheduler": "systemd-user" if kind == "systemd" and loc.user else kind,
            "files": [str(f) for f in files], "changed": changed, "replaced": replaced, "notes": notes}


def remove(loc: Locations) -> list[str]:
    """Disable and delete whatever this module installed; the files removed (none: nothing to do).
    A backup running right now is left to finish."""
    return _remove_systemd(loc) + ([] if loc.user else _remove_cron(loc))


def _remove_systemd(loc: Locations) -> list[str]:
    paths = [p for p in (loc.systemd_dir / TIMER, loc.systemd_dir / SERVICE) if p.exists()]
    if not paths:
        return []
    if loc.live or not loc.user:  # disable first: offline disable reads [Install] from the unit file
        systemctl(loc, "disable", *(["--now"] if loc.live else []), TIMER, check=False)
    for p in paths:
        p.unlink()
    if loc.live:
        systemctl(loc, "daemon-reload")
    return [str(p) for p in paths]


def _remove_cron(loc: Locations) -> list[str]:
    if not loc.cron_file.exists():
        return []
    loc.cron_file.unlink()
    return [str(loc.cron_file)]
