"""Prometheus metrics of the last run, for node_exporter's textfile collector.

The file is replaced atomically so the collector never scrapes half a file. "Last success" times are
carried over from the previous file when this run (or a source) failed: an alert on their age is the
one alert that catches every way nightly backups can stop, including the timer never firing.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agent.nightly.report import RunReport


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    textfile: str | None = None  # e.g. /var/lib/node_exporter/textfile_collector/agent.prom


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
    "agent_source_new_bytes": "Bytes of new (not yet stored) data found in the source in the last run.",
    "agent_source_uploaded_bytes": "Bytes uploaded for the source in the last run (compressed, encrypted).",
    "agent_source_duration_seconds": "Duration of the source's backup in the last run.",
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
            ("agent_source_new_bytes", lab, s.new_bytes),
            ("agent_source_uploaded_bytes", lab, s.uploaded_bytes),
            ("agent_source_duration_seconds", lab, s.duration_s),
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
    out: list[str] = []
    for name, help_text in _HELP.items():  # one HELP/TYPE block per family, samples grouped under it
        rows = [(lab, v) for n, lab, v in samples if n == name and v is not None]
        if rows:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            out += [f"{name}{_labels(lab)} {_number(v)}" for lab, v in rows]
    return "\n".join(out) + "\n"


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
    text = render(report, previous)
    # the collector reads only *.prom, so the temporary name must not end in .prom
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # node_exporter usually runs as another user
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- exposition format ------------------------------------------------------------------------------

def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    esc = {k: v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for k, v in labels.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc.items()) + "}"


def _number(v: float) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
    return str(int(v)) if float(v).is_integer() else repr(float(v))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")


def parse_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted label pairs): value} of a text exposition; unreadable lines are ignored
    (a damaged old file must not stop the new one from being written)."""
    result = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if not m or line.lstrip().startswith("#"):
            continue
        labels = tuple(sorted((k, _UNESCAPE.sub(lambda e: "\n" if e[1] == "n" else e[1], v))
                              for k, v in _LABEL.findall(m[2] or "")))
        try:
            result[(m[1], labels)] = float(m[3])
        except ValueError:
            continue
    return result
