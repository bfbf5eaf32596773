"""What the last `agent run` did, kept in a small JSON file so `agent schedule status` can answer
"did last night's backup work?" without opening the repository (no passphrase, no network)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path

from agent.config import env
from agent.config.stamps import rfc3339
from agent.errors import AgentError
from agent.nightly.report import RunReport, summarize

STATE_FILE = "state.json"


@dataclass
class RunState:
    last_started: datetime | None = None
    last_finished: datetime | None = None   # None while the first run is still going (or crashed)
    last_status: str | None = None          # "success" | "warning" | "failure"
    last_exit_code: int | None = None
    last_summary: str | None = None
    last_success: datetime | None = None    # finish time of the last run that did not fail
    #: per source name, when its newest snapshot last verified clean: what makes the next verify due
    last_verified: dict[str, datetime] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {k: (rfc3339(v, fraction=True) if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        out["last_verified"] = {k: rfc3339(v, fraction=True) for k, v in self.last_verified.items()}
        return out


def default_state_path() -> Path:
    """$AGENT_STATE_DIR/state.json; else /var/lib/agent when root (system timer, cron), else the user's
    state dir (~/.local/state/agent): where a `--user` timer's run and its owner's `status` both look."""
    override = os.environ.get(env.STATE_DIR)
    if override:
        return Path(override).expanduser() / STATE_FILE
    if os.geteuid() == 0:
        return Path("/var/lib/agent") / STATE_FILE
    from platformdirs import user_state_dir

    return Path(user_state_dir("agent")) / STATE_FILE


def load_state(path: str | os.PathLike) -> RunState | None:
    """The saved state, or None when no run has saved one yet. Raises AgentError when it is unreadable."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        values = {f.name: raw.get(f.name) for f in fields(RunState)}
        for key in ("last_started", "last_finished", "last_success"):
            if values[key] is not None:
                values[key] = datetime.fromisoformat(values[key])
        values["last_verified"] = {str(k): datetime.fromisoformat(v)
                                   for k, v in (values["last_verified"] or {}).items()}
        return RunState(**values)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise AgentError(f"cannot read the run state file {p}: {exc}",
                         hint="delete it; the next run writes a new one") from None


def save_state(path: str | os.PathLike, state: RunState) -> None:
    """Atomically replace the file (temp file in the same directory, then rename), creating the directory."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state.to_dict(), f, indent=2)
            f.write("\n")
            os.fchmod(f.fileno(), 0o644)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_start(path: str | os.PathLike, started: datetime) -> RunState:
    """Mark a run as started, keeping the previous result: started after finished means the run is
    going on, or crashed."""
    state = replace(_previous(path), last_started=started)
    save_state(path, state)
    return state


def record_finish(path: str | os.PathLike, report: RunReport) -> RunState:
    """Store the finished run's result; last_success only moves when the run did not fail, and a
    source's last_verified only when its verify came out clean (a damaged one is retried next run)."""
    prev = _previous(path)
    verified = dict(prev.last_verified)
    verified.update({s.name: report.finished for s in report.sources if s.verify and s.verify.status == "clean"})
    state = RunState(last_started=report.started, last_finished=report.finished, last_status=report.status,
                     last_exit_code=report.exit_code, last_summary=summarize(report),
                     last_success=report.finished if report.status != "failure" else prev.last_success,
                     last_verified=verified)
    save_state(path, state)
    return state


def _previous(path: str | os.PathLike) -> RunState:
    try:
        return load_state(path) or RunState()
    except AgentError:
        return RunState()  # a damaged file is replaced rather than failing the backup run
