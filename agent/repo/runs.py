"""Run records: what a backup run that ended without a snapshot leaves behind (runs/<id>).

`agent snapshots --all` shows them, and prune keeps the packs they name until a later run of
the same source completes (or RUN_RECORD_DAYS pass), so an interrupted night resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

RUN_RECORD_VERSION = 1


@dataclass
class RunRecord:
    status: str  # "incomplete" (deadline, stop request) or "failed"
    reason: str
    host: str
    source: str
    started: str  # ISO 8601, UTC
    stopped: str
    source_bytes: int = 0
    done_bytes: int = 0
    new_bytes: int = 0
    uploaded_bytes: int = 0
    agent_version: str = ""
    packs: list[str] = field(default_factory=list)  # uploaded by this run; kept for the next one
    version: int = RUN_RECORD_VERSION

    def to_json(self) -> bytes:
        d = asdict(self)
        ordered = {"version": d.pop("version"), **d}  # the field order records have had since version 1
        return json.dumps(ordered, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RunRecord:
        """ValueError when `raw` is not a record (the caller reports it as damage)."""
        try:
            d = json.loads(raw)
        except RecursionError:  # nested past the stack: not a run record
            raise ValueError("a run record is nested too deeply") from None
        if not isinstance(d, dict):
            raise ValueError("a run record is not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            rec = cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:  # a required field is missing
            raise ValueError(str(exc)) from None
        for f in fields(cls):  # authenticated, so only a bug writes wrong types; still never crash on one
            value = getattr(rec, f.name)
            want = {"int": int, "str": str}.get(str(f.type))
            if want is not None and (not isinstance(value, want) or isinstance(value, bool)):
                raise ValueError(f"run record field {f.name} is not {f.type}")
        if not isinstance(rec.packs, list) or not all(isinstance(p, str) for p in rec.packs):
            raise ValueError("run record field packs is not a list of pack ids")
        for when in (rec.started, rec.stopped):  # listings sort and print them as times
            if datetime.fromisoformat(when).utcoffset() is None:
                raise ValueError("run record time names no offset")
        return rec

    def summary(self) -> dict:
        """What `snapshots --all --json` prints (the pack list is internal)."""
        d = asdict(self)
        del d["packs"]
        return d
