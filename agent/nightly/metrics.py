"""Prometheus metrics of the last run, for node_exporter's textfile collector.

The file is replaced atomically so the collector never scrapes half a file. "Last success" times are
carried over from the previous file when this run (or a source) failed: an alert on their age is the
one alert that catches every way nightly backups can stop, including the timer never firing.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agent.nightly.report import RunReport


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    textfile: str | None = None  # e.g. /var/lib/node_exporter/textfile_collector/agent.prom
    #: where `agent status` writes every host's staleness (its own file: `textfile` is this machine's run)
    status_textfile: str | None = None


_HELP = {
    "agent_last_run_timestamp_seconds": "When the last run finished (Unix time).",
    "agent_last_run_success": "1 if the last run did not fail (success or warning), else 0.",
    "agent_last_run_exit_code": "Exit code of the last run: 0 success, 3 warning, 1 failure.",
    "agent_last_success_timestamp_seconds": "When the last run that did not fail finished (Unix time).",
    "agent_run_duration_seconds": "Duration of the last run.",
    "agent_repository_bytes": "Bytes stored in the repository after the last run.",
    "agent_repository_snapshots": "Snapshots in the repository after the last run.",
    "agent_source_status": "1 if the source was backed up completely in the last run, else 0.",
    "agent_source_last_success_timestamp_seconds": "When the source was last backed up completely (Unix time).",
    "agent_source_read_bytes": "Bytes read from the source in the last run.",
    "agent_source_skipped_free_bytes": "Bytes of free space, swap and left-out partitions not read in the last run.",
    "agent_source_new_bytes": "Bytes of new (not yet stored) data found in the source in the last run.",
    "agent_source_uploaded_bytes": "Bytes uploaded for the source in the last run (compressed, encrypted).",
    "agent_source_duration_seconds": "Duration of the source's backup in the last run.",
    "agent_source_suspicious": "1 if the source's snapshot of the last run was flagged suspicious (new data far "
                               "above usual and mostly incompressible), else 0.",
    "agent_source_suspicious_unacknowledged": "Suspicious snapshots of the source not acknowledged yet "
                                              "(`agent ack`); each keeps the snapshot before it from forget.",
    "agent_verify_status": "1 if the last verify of the source's newest snapshot found it sound, else 0.",
    "agent_verify_timestamp_seconds": "When the source's newest snapshot was last verified (Unix time).",
    "agent_verify_last_success_timestamp_seconds": "When a verify of the source last found it sound (Unix time).",
    "agent_verify_damaged_bytes": "Image bytes of the verified snapshot whose chunks are damaged or missing.",
    "agent_verify_duration_seconds": "Duration of the source's last verify.",
    "agent_verify_partition_clean": "1 if the partition's filesystem checker found it clean in the last verify "
                                    "with fsck, 0 if damaged (partitions not checked are absent).",
    "agent_copy_status": "1 if the `[[copies]]` target got every selected snapshot in the last run, else 0.",
    "agent_copy_last_success_timestamp_seconds": "When the copy last completed (Unix time).",
    "agent_copy_snapshots_copied": "Snapshots copied to the target in the last run.",
    "agent_copy_uploaded_bytes": "Bytes uploaded to the copy's target in the last run.",
}
_VERIFY = "agent_verify_"


def render(report: RunReport, previous: str | None = None) -> str:
    """The exposition text for `report`; `previous` is the old file's text, for the last-success times."""
    from prometheus_client import generate_latest

    return generate_latest(_run_registry(report, previous)).decode()


def _run_registry(report: RunReport, previous: str | None):
    old = parse_samples(previous or "")
    finished = report.finished.timestamp()
    run_ok = report.status != "failure"
    samples: list[tuple[str, dict[str, str], float | None]] = [
        ("agent_last_run_timestamp_seconds", {}, finished),
        ("agent_last_run_success", {}, 1 if run_ok else 0),
        ("agent_last_run_exit_code", {}, report.exit_code),
        ("agent_last_success_timestamp_seconds", {},
         finished if run_ok else old.get(("agent_last_success_timestamp_seconds", ()))),
        ("agent_run_duration_seconds", {}, report.duration_s),
        ("agent_repository_bytes", {}, report.repository_bytes),
        ("agent_repository_snapshots", {}, report.snapshot_count),
    ]
    for s in report.sources:
        lab = {"source": s.name}
        ok = s.status == "ok"
        samples += [
            ("agent_source_status", lab, 1 if ok else 0),
            ("agent_source_last_success_timestamp_seconds", lab,
             finished if ok else old.get(("agent_source_last_success_timestamp_seconds", (("source", s.name),)))),
            ("agent_source_read_bytes", lab, s.read_bytes),
            ("agent_source_skipped_free_bytes", lab, s.skipped_free_bytes),
            ("agent_source_new_bytes", lab, s.new_bytes),
            ("agent_source_uploaded_bytes", lab, s.uploaded_bytes),
            ("agent_source_duration_seconds", lab, s.duration_s),
            ("agent_source_suspicious", lab, 1 if s.suspicious else 0),
            ("agent_source_suspicious_unacknowledged", lab, s.suspicious_unacknowledged),
        ]
        samples += _verify_samples(s, finished, old)
    for c in report.copies:
        lab = {"copy": c.name}
        ok = c.status == "ok"
        samples += [
            ("agent_copy_status", lab, 1 if ok else 0),
            ("agent_copy_last_success_timestamp_seconds", lab,
             finished if ok else old.get(("agent_copy_last_success_timestamp_seconds", (("copy", c.name),)))),
            ("agent_copy_snapshots_copied", lab, c.copied),
            ("agent_copy_uploaded_bytes", lab, c.uploaded_bytes),
        ]
    return registry_of(samples, _HELP)


def _verify_samples(s, finished: float, old: dict) -> list[tuple[str, dict[str, str], float | None]]:
    """A verified source's verify metrics; for one not verified in this run (not due), the samples
    of its last verify are carried over from the previous file, so they describe the last verify."""
    v = s.verify
    if v is None:
        return [(name, dict(labels), value) for (name, labels), value in old.items()
                if name.startswith(_VERIFY) and dict(labels).get("source") == s.name]
    lab = {"source": s.name}
    ok = v.status == "clean"
    out: list[tuple[str, dict[str, str], float | None]] = [
        ("agent_verify_status", lab, 1 if ok else 0),
        ("agent_verify_timestamp_seconds", lab, finished),
        ("agent_verify_last_success_timestamp_seconds", lab,
         finished if ok else old.get(("agent_verify_last_success_timestamp_seconds", (("source", s.name),)))),
        ("agent_verify_damaged_bytes", lab, v.damaged_bytes),
        ("agent_verify_duration_seconds", lab, v.duration_s),
    ]
    for p in v.partitions:
        if p.get("status") in ("clean", "damaged"):
            part = {"source": s.name, "partition": str(p.get("number") if p.get("number") is not None else "image"),
                    "filesystem": str(p.get("filesystem") or "")}
            out.append(("agent_verify_partition_clean", part, 1 if p["status"] == "clean" else 0))
    return out


def write_textfile(path: str | os.PathLike, report: RunReport, previous: str | None = None) -> None:
    """Atomically replace `path` (mode 0644). `previous` defaults to the file's current content.
    Raises OSError (missing directory, permissions): the caller reports it, the backup stands."""
    target = Path(path)
    if previous is None:
        try:
            previous = target.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            previous = ""
    write_registry(target, _run_registry(report, previous))


def write_registry(target: str | os.PathLike, registry) -> None:
    """prometheus_client's write_to_textfile (temporary name not ending in .prom, then a rename),
    made readable by node_exporter, which usually runs as another user."""
    from prometheus_client import write_to_textfile

    write_to_textfile(str(target), registry)
    os.chmod(target, 0o644)


# ---- exposition format (prometheus_client) -------------------------------------------------------

Sample = tuple[str, dict[str, str], "float | None"]


def registry_of(samples: list[Sample], helps: dict[str, str]):
    """A CollectorRegistry of `samples` (None values left out), one gauge family per name in `helps`'
    order. A family without samples is left out, unlike a plain Gauge that would report 0."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    families = []
    for name, help_text in helps.items():
        rows = [(lab, v) for n, lab, v in samples if n == name and v is not None]
        if not rows:
            continue
        family = GaugeMetricFamily(name, help_text, labels=list(rows[0][0]))
        for lab, v in rows:
            family.add_metric([lab[k] for k in rows[0][0]], float(v))
        families.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return registry


class _Families:
    """A collector of ready-made families (a registry asks collectors, not values)."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def parse_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted label pairs): value} of a text exposition, read with prometheus_client's parser
    line by line: unreadable lines are ignored (a damaged old file must not stop the new one)."""
    from prometheus_client.parser import text_string_to_metric_families

    result = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            families = list(text_string_to_metric_families(line + "\n"))
        except (ValueError, IndexError, KeyError):
            continue
        for family in families:
            for s in family.samples:
                result[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return result


# ---- the fleet, as `agent status` sees it ----------------------------------------------------------

_FLEET_HELP = {
    "agent_fleet_sources": "Sources (host and source path) with snapshots or run records in the repository.",
    "agent_fleet_flagged_sources": "Sources flagged stale, failed, incomplete or never succeeded.",
    "agent_fleet_last_success_timestamp_seconds": "Time of the source's newest complete snapshot (Unix time).",
    "agent_fleet_age_seconds": "Age of the source's newest complete snapshot when status ran.",
    "agent_fleet_stale": "1 if the source's newest complete snapshot is older than its threshold, else 0.",
    "agent_fleet_stale_after_seconds": "The source's staleness threshold.",
    "agent_fleet_last_run_failed": "1 if the source's latest run ended without a snapshot (failed or "
                                   "incomplete), else 0.",
    "agent_fleet_status_timestamp_seconds": "When `agent status` wrote this file (Unix time).",
}


def write_fleet_textfile(path: str | os.PathLike, status: dict) -> None:
    """Per-host staleness from a `status --json` dict (agent.maintenance.fleet), in its own file:
    the nightly run's file describes this machine's run, this one every machine in the repository."""
    from datetime import datetime

    generated = datetime.fromisoformat(status["generated"].replace("Z", "+00:00")).timestamp()
    samples: list[Sample] = [
        ("agent_fleet_sources", {}, len(status["sources"])),
        ("agent_fleet_flagged_sources", {}, status["flagged"]),
        ("agent_fleet_status_timestamp_seconds", {}, generated),
    ]
    for s in status["sources"]:
        lab = {"host": s["host"], "source": s["source"]}
        last = s["last_success"]
        samples += [
            ("agent_fleet_last_success_timestamp_seconds", lab,
             datetime.fromisoformat(last["time"].replace("Z", "+00:00")).timestamp() if last else None),
            ("agent_fleet_age_seconds", lab, s["age_s"]),
            ("agent_fleet_stale", lab, 1 if "stale" in s["flags"] or "never succeeded" in s["flags"] else 0),
            ("agent_fleet_stale_after_seconds", lab, s["stale_after_s"]),
            ("agent_fleet_last_run_failed", lab, 1 if s["problem_is_latest"] else 0),
        ]
    write_registry(path, registry_of(samples, _FLEET_HELP))
