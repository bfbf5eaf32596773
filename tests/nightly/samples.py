"""Run reports shared by the nightly tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.nightly.report import RunReport, SourceReport

STARTED = datetime(2024, 5, 1, 1, 0, 0, tzinfo=UTC)


def ok_source(name: str = "system-disk", **kw) -> SourceReport:
    return SourceReport(name=name, path=kw.pop("path", "/dev/vg0/nightly"), status="ok",
                        snapshot_id=kw.pop("snapshot_id", "3f9a2c1e77d04b1a"), read_bytes=10 << 30,
                        new_bytes=300 << 20, uploaded_bytes=120 << 20, duration_s=312.5, **kw)


def failed_source(name: str = "data-disk") -> SourceReport:
    return SourceReport(name=name, path="/dev/sdb", status="failed",
                        error="wrong passphrase: no key of this repository opens with it",
                        hint="check AGENT_PASSPHRASE_FILE", duration_s=2.0)


def report(*sources: SourceReport, errors: list[str] | None = None, finished_after_s: float = 900,
           started: datetime = STARTED) -> RunReport:
    return RunReport(host="web1", repository="s3://backups.example/web", started=started,
                     finished=started + timedelta(seconds=finished_after_s), sources=list(sources),
                     repository_bytes=42 << 30, snapshot_count=17, errors=list(errors or []))


def failing_report() -> RunReport:
    return report(ok_source(), failed_source(), errors=["retention failed: repository locked"])
