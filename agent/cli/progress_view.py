"""How progress events are shown: a rich bar on a terminal, JSON lines with --json, and plain
periodic lines otherwise (cron mail, journald), so a long nightly run is never silent."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from agent.config import units
from agent.progress import Advanced, Event, Finished, Listener, Started, Warning


@dataclass
class _Tally:
    """What the last events said, plus the rate and ETA derived from them."""

    operation: str
    t0: float
    total: int | None = None
    done: int = 0
    new: int = 0
    uploaded: int = 0

    def update(self, ev: Event) -> None:
        if isinstance(ev, Started):
            self.operation, self.total, self.t0 = ev.operation, ev.total_bytes, time.monotonic()
        elif isinstance(ev, Advanced):
            self.done, self.new, self.uploaded = ev.done_bytes, ev.new_bytes, ev.stored_bytes

    @property
    def rate(self) -> float:
        return self.done / max(1e-6, time.monotonic() - self.t0)

    @property
    def eta_s(self) -> float | None:
        if not self.total or not self.done:
            return None
        return max(0.0, (self.total - self.done) / max(1.0, self.rate))

    def to_dict(self) -> dict:
        eta = self.eta_s
        return {"event": "progress", "operation": self.operation, "done_bytes": self.done,
                "total_bytes": self.total, "new_bytes": self.new, "uploaded_bytes": self.uploaded,
                "bytes_per_s": round(self.rate), "eta_s": None if eta is None else round(eta)}

    def line(self) -> str:
        pct = f" ({self.done * 100 // self.total}%)" if self.total else ""
        eta = self.eta_s
        return (f"{self.operation}: {units.size(self.done)} of {units.size(self.total)}{pct}, "
                f"new {units.size(self.new)}, uploaded {units.size(self.uploaded)}, "
                f"{units.rate(self.done, max(1e-6, time.monotonic() - self.t0))}"
                + (f", about {units.duration(eta)} left" if eta is not None else ""))


def json_lines(label: str, write: Callable[[str], None], warn: Callable[[str], None],
               interval_s: float = 1.0) -> Listener:
    """Progress as JSON lines on stdout; the command's final summary is the last line."""
    tally, last = _Tally(label, time.monotonic()), [0.0]

    def listener(ev: Event) -> None:
        tally.update(ev)
        now = time.monotonic()
        if isinstance(ev, Warning):
            warn(ev.message)
            write(json.dumps({"event": "warning", "message": ev.message}))
        elif isinstance(ev, (Started, Finished)) or now - last[0] >= interval_s:
            last[0] = now
            write(json.dumps(tally.to_dict() if not isinstance(ev, Started) else
                             {"event": "started", "operation": ev.operation, "total_bytes": ev.total_bytes}))
    return listener


def plain_lines(label: str, info: Callable[[str], None], warn: Callable[[str], None],
                interval_s: float) -> Listener:
    """One line every `interval_s` seconds (not per event: cron mails stay readable)."""
    tally, last = _Tally(label, time.monotonic()), [time.monotonic()]

    def listener(ev: Event) -> None:
        tally.update(ev)
        if isinstance(ev, Warning):
            warn(ev.message)
        elif isinstance(ev, Advanced) and time.monotonic() - last[0] >= interval_s:
            last[0] = time.monotonic()
            info(tally.line())
    return listener


@contextmanager
def rich_bar(label: str, console, warn: Callable[[str], None]) -> Iterator[Listener]:
    """A transient bar: phase, bytes done/total, new and uploaded bytes, rate and ETA."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(TextColumn("[bold]{task.fields[phase]}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TextColumn("new {task.fields[new]} · up {task.fields[up]}"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, phase=label, new="0 B", up="0 B")

        def listener(ev: Event) -> None:
            if isinstance(ev, Started):
                bar.update(task, total=ev.total_bytes, phase=ev.operation)
            elif isinstance(ev, Advanced):
                bar.update(task, completed=ev.done_bytes, new=units.size(ev.new_bytes), up=units.size(ev.stored_bytes))
            elif isinstance(ev, Warning):
                warn(ev.message)
        yield listener


def syslog_logger(warn: Callable[[str], None], socket_path: str = "/dev/log") -> logging.Logger | None:
    """A logger for warnings and run summaries that goes to the local syslog (journald reads it too), or
    None after a warning when there is no syslog socket: never a silent fallback to UDP port 514,
    where nothing may listen and every line would be lost."""
    import logging.handlers

    logger = logging.getLogger("agent.syslog")
    logger.propagate = False  # stderr already shows these
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        problem = _unusable_socket(socket_path)  # the handler itself ignores a failed connect, then loses lines
        if problem:
            warn(f"not logging to syslog: its socket {socket_path} {problem} (is rsyslog or journald running?)")
            return None
        handler = logging.handlers.SysLogHandler(socket_path, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("agent[%(process)d]: %(message)s"))
        logger.addHandler(handler)
    return logger


def _unusable_socket(path: str) -> str | None:
    """Why nothing can be sent to the syslog socket at `path`, or None when a datagram or stream
    connection succeeds (the two kinds SysLogHandler tries)."""
    import socket

    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
                return None
            except FileNotFoundError:
                return "does not exist"
            except OSError as exc:
                error = exc.strerror or exc.__class__.__name__
    return f"refuses connections ({error})"


def stdout_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
