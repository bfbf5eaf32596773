"""The outcome of one `agent run`: what notifications, metrics, the state file and `--json` all render."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from agent.config.stamps import rfc3339


@dataclass
class VerifyReport:
    """`agent verify` of the source's newest snapshot, when the schedule made it due."""

    status: str          # "clean" | "damaged" | "failed" (could not verify: see error)
    snapshot_id: str | None = None
    fsck: bool = False
    damaged_bytes: int = 0
    damaged_ranges: list[list[int]] = field(default_factory=list)  # [offset, length] in the image
    partitions: list[dict] = field(default_factory=list)  # agent.verify.result.PartitionCheck as a dict
    error: str | None = None
    hint: str | None = None
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class SourceReport:
    name: str            # the source's name in the config, e.g. "system-disk"
    path: str            # device or image path
    status: str          # "ok" | "incomplete" | "skipped" | "failed"
    snapshot_id: str | None = None
    error: str | None = None      # one-line message, never a secret
    hint: str | None = None
    read_bytes: int = 0
    skipped_free_bytes: int = 0  # free space, swap and left-out partitions: not read, stored as zeros
    new_bytes: int = 0
    uploaded_bytes: int = 0
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    verify: VerifyReport | None = None  # None: not due in this run
    #: tonight's snapshot was flagged suspicious (agent.backup.suspicion): its note, a "message" for people
    #: and the "protected_snapshot" kept from forget until `agent ack`; None when not flagged
    suspicious: dict | None = None
    suspicious_unacknowledged: int = 0  # the source's flagged nights (tonight's included) not acknowledged yet


@dataclass
class CopyReport:
    """One `[[copies]]` entry's `agent copy` after the backups."""

    name: str
    target: str          # already redacted by the caller
    status: str          # "ok" | "incomplete" | "skipped" | "failed"
    copied: int = 0
    skipped: int = 0
    read_bytes: int = 0
    uploaded_bytes: int = 0
    duration_s: float = 0.0
    error: str | None = None
    hint: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    host: str
    repository: str      # already redacted by the caller
    started: datetime    # tz-aware UTC
    finished: datetime
    sources: list[SourceReport]
    repository_bytes: int | None = None
    snapshot_count: int | None = None
    errors: list[str] = field(default_factory=list)   # run-level errors (e.g. retention failed)
    #: monitoring pings that were not delivered (they never change the run's status)
    delivery_problems: list[str] = field(default_factory=list)
    copies: list[CopyReport] = field(default_factory=list)

    @property
    def status(self) -> str:
        """"failure" if a source failed, a verify found damage or could not run, or the run had errors;
        "warning" if a source is incomplete or skipped, its night was suspicious, or anything warned; else
        "success"."""
        if self.errors or any(s.status == "failed" or (s.verify and s.verify.status != "clean")
                              for s in self.sources) or any(c.status == "failed" for c in self.copies):
            return "failure"
        if any(s.status != "ok" or s.warnings or s.suspicious for s in self.sources) \
                or any(c.status != "ok" for c in self.copies):
            return "warning"
        return "success"

    @property
    def exit_code(self) -> int:
        """0 success, 3 warning (finished, but not everything is backed up cleanly: like restore's
        "finished with damage"), 1 failure."""
        return {"success": 0, "warning": 3}.get(self.status, 1)

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished - self.started).total_seconds())

    def to_dict(self) -> dict:
        """JSON-ready: ISO 8601 times with offset; the webhook body and `agent run --json`."""
        return {
            "host": self.host,
            "repository": self.repository,
            "status": self.status,
            "exit_code": self.exit_code,
            "started": iso(self.started),
            "finished": iso(self.finished),
            "duration_s": round(self.duration_s, 3),
            "repository_bytes": self.repository_bytes,
            "snapshot_count": self.snapshot_count,
            "errors": list(self.errors),
            "sources": [asdict(s) for s in self.sources],
            "copies": [asdict(c) for c in self.copies],
        }


def iso(t: datetime) -> str:
    """RFC 3339 in UTC (agent.config.stamps); a naive time is taken as UTC (the report's contract)."""
    return rfc3339(t, fraction=True) or ""


def summarize(report: RunReport) -> str:
    """One line for a mail subject, the webhook's "summary" and the state file, e.g.
    `FAILURE on web1: 1 of 2 sources failed`."""
    n = len(report.sources)
    counts = {st: sum(1 for s in report.sources if s.status == st) for st in ("failed", "incomplete", "skipped")}
    parts = [f"{c} of {n} source{'s' if n != 1 else ''} {st}" for st, c in counts.items() if c]
    verifies = [s.verify for s in report.sources if s.verify is not None]
    for st in ("damaged", "failed"):
        c = sum(1 for v in verifies if v.status == st)
        if c:
            parts.append(f"{c} of {len(verifies)} verif{'ies' if len(verifies) != 1 else 'y'} {st}")
    for st in ("failed", "incomplete", "skipped"):
        c = sum(1 for x in report.copies if x.status == st)
        if c:
            parts.append(f"{c} of {len(report.copies)} cop{'ies' if len(report.copies) != 1 else 'y'} {st}")
    suspicious = sum(1 for s in report.sources if s.suspicious)
    if suspicious:
        parts.append(f"{suspicious} suspicious night{'s' if suspicious != 1 else ''} (agent ack)")
    if report.errors:
        parts.append(f"{len(report.errors)} run error{'s' if len(report.errors) != 1 else ''}")
    warnings = sum(len(s.warnings) for s in report.sources)
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    if not parts:
        parts.append(f"{n} source{'s' if n != 1 else ''} backed up" if n else "nothing to back up")
        if verifies:
            parts.append(f"{len(verifies)} verified clean")
    return f"{report.status.upper()} on {report.host}: {', '.join(parts)}"
