"""What a `repair` did, or with --dry-run would do: one line per action, for people and --json."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RepairReport:
    target: str  # "index", "packs" or "snapshots"
    dry_run: bool = False
    actions: list[str] = field(default_factory=list)  # done (or, dry run, to be done), one line each
    warnings: list[str] = field(default_factory=list)  # what repair could not fix, and what to do
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def to_dict(self) -> dict:
        return {"repair": self.target, "dry_run": self.dry_run, "actions": self.actions,
                "warnings": self.warnings, "counts": self.counts}
