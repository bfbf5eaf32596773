"""What a copy is asked to do (CopyOptions) and what it reports (CopyResult)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class CopyOptions:
    ids: list[str] = field(default_factory=list)  # snapshot ids or prefixes; empty: every selected one
    host: str | None = None
    source: str | None = None
    tags: list[str] = field(default_factory=list)
    at: datetime | None = None  # only the newest snapshot at or before this time (per host and source)
    workers: int = max(2, os.cpu_count() or 2)  # sealing (different keys)
    uploads: int = 0  # packs uploading at once; 0: the target's connection limit, at most 4
    fetches: int = 3  # ranged reads of the source in flight
    checkpoint_bytes: int = 256 << 20
    lock_wait: float = 0.0
    deadline: datetime | None = None  # stop cleanly at this time (a nightly window)
    stop: threading.Event | None = None  # set by a signal handler: stop cleanly now


@dataclass
class CopyResult:
    mode: str  # "replica" (shared keys: sealed objects move as they are) or "reseal"
    copied: list[tuple[str, str]] = field(default_factory=list)  # (source id, target id)
    skipped: list[str] = field(default_factory=list)  # source ids the target already holds
    read_bytes: int = 0  # fetched from the source's packs
    uploaded_bytes: int = 0  # packs and index segments written to the target
    uploaded_packs: int = 0
    whole_packs: int = 0  # packs copied as they are (replica, every blob needed)
    recovered_packs: int = 0  # left unindexed in the target by an interrupted copy, reused
    dedup_lost: bool = False  # the target cuts disks differently: its own backups won't dedup with copies
    duration_s: float = 0.0
    stopped: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def summary(self) -> dict:
        return {
            "complete": self.complete, "stopped": self.stopped, "mode": self.mode,
            "copied": [{"source_id": s, "target_id": t} for s, t in self.copied], "skipped": self.skipped,
            "snapshots_copied": len(self.copied), "snapshots_skipped": len(self.skipped),
            "read_bytes": self.read_bytes, "uploaded_bytes": self.uploaded_bytes,
            "uploaded_packs": self.uploaded_packs, "whole_packs": self.whole_packs,
            "recovered_packs": self.recovered_packs, "dedup_lost": self.dedup_lost,
            "duration_s": self.duration_s, "warnings": self.warnings,
        }
