"""How progress events are shown: a rich bar on a terminal, JSON lines with --json, and plain
periodic lines otherwise (cron mail, journald), so a long nightly run is never silent."""

from __future__ import annotations

import logging
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from agent.config import units
from agent.progress import Advanced, Event, Finished, Listener, Started, Warning

RATE_WINDOW_S = 20.0  # the ETA follows the recent rate: a slow start (seeding, a cold cache) fades out
TRANSFERS = ("backup", "copy")  # operations that find new data and upload it; others show neither


@dataclass
class _Tally:
    """What the last events said, plus the rate over the last RATE_WINDOW_S seconds and the ETA."""

    operation: str
    t0: float
    total: int | None = None
    done: int = 0
    new: int = 0
    uploaded: int = 0
    samples: deque = field(default_factory=deque)  # (monotonic time, done bytes), oldest first

    def update(self, ev: Event, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if isinstance(ev, Started):
            self.operation, self.total, self.t0, self.done = ev.operation, ev.total_bytes, now, 0
            self.samples.clear()
            self.samples.append((now, 0))
        elif isinstance(ev, Advanced):
            self.done, self.new, self.uploaded = ev.done_bytes, ev.new_bytes, ev.stored_bytes
            self.samples.append((now, ev.done_bytes))
            while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW_S:
                self.samples.popleft()

    def rate(self, now: float | None = None) -> float:
        """Bytes per second over the window (over the whole run until two samples a second apart exist)."""
        now = time.monotonic() if now is None else now
        if len(self.samples) >= 2:
            (t_a, d_a), (t_b, d_b) = self.samples[0], self.samples[-1]
            if t_b - t_a >= 1.0:
                return (d_b - d_a) / (t_b - t_a)
        return self.done / max(1e-6, now - self.t0)

    def eta_s(self, now: float | None = None) -> float | None:
        if not self.total or not self.done:
            return None
        return max(0.0, (self.total - self.done) / max(1.0, self.rate(now)))

    def to_dict(self) -> dict:
        eta = self.eta_s()
        out = {"operation": self.operation, "done_bytes": self.done, "total_bytes": self.total,
               "bytes_per_s": round(self.rate()), "eta_s": None if eta is None else round(eta)}
        if self.operation in TRANSFERS:
            out.update(new_bytes=self.new, uploaded_bytes=self.uploaded)
        return out

    def line(self) -> str:
        pct = f" ({self.done * 100 // self.total}%)" if self.total else ""
        eta = self.eta_s()
        moved = (f", new {units.size(self.new)}, uploaded {units.size(self.uploaded)}"
                 if self.operation in TRANSFERS else "")
        return (f"{self.operation}: {units.size(self.done)} of {units.size(self.total)}{pct}{moved}, "
                f"{units.rate(round(self.rate()), 1.0)}"
                + (f", about {units.duration(eta)} left" if eta is not None else ""))


def json_lines(label: str, write: Callable[[str, dict], None], warn: Callable[[str], None],
               interval_s: float = 1.0) -> Listener:
    """Progress as JSON lines on stdout (`write(event, fields)`); the command's result is the last line."""
    tally, last = _Tally(label, time.monotonic()), [0.0]

    def listener(ev: Event) -> None:
        tally.update(ev)
        now = time.monotonic()
        if isinstance(ev, Warning):
            warn(ev.message)  # AppContext.warn: stderr, and the warning event with --json
        elif isinstance(ev, Started):
            last[0] = now
            write("started", {"operation": ev.operation, "total_bytes": ev.total_bytes})
        elif isinstance(ev, Finished) or now - last[0] >= interval_s:
            last[0] = now
            write("progress", tally.to_dict())
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
    """A transient bar: phase, bytes done/total in binary units, the windowed rate, new and uploaded
    bytes (backup and copy only) and the ETA from the windowed rate."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    tally = _Tally(label, time.monotonic())
    with Progress(TextColumn("[bold]{task.fields[phase]}"), BarColumn(), DownloadColumn(binary_units=True),
                  TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[moved]}"),
                  TextColumn("{task.fields[eta]}"), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, phase=label, rate="", moved="", eta="")

        def listener(ev: Event) -> None:
            tally.update(ev)
            if isinstance(ev, Started):
                bar.update(task, total=ev.total_bytes, completed=0, phase=ev.operation, moved="", eta="")
            elif isinstance(ev, Advanced):
                eta = tally.eta_s()
                moved = (f"new {units.size(ev.new_bytes)} · up {units.size(ev.stored_bytes)}"
                         if tally.operation in TRANSFERS else "")
                bar.update(task, completed=ev.done_bytes, rate=units.rate(round(tally.rate()), 1.0), moved=moved,
                           eta="" if eta is None else f"{units.duration(eta)} left")
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

