"""Leftovers of writes that never finished, and locks of runs that are gone: check reports them,
prune removes them.

A writer killed before its rename (local, SFTP, SMB) or an upload nobody completed (S3) leaves
bytes that no index or snapshot names: the storage keeps, and may bill, them, and nothing else
ever removes them. A lock whose run is gone is ignored by everyone, yet stays listed. Removing
either loses nothing; callers pass an age margin so that a writer still at work is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Sequence

from agent.config import units
from agent.errors import StorageError
from agent.repo.repository import Leftover, Repository


@dataclass
class Debris:
    leftovers: Sequence[Leftover] = ()
    stale_locks: int = 0
    unreadable_locks: int = 0  # damaged lock records: they block no one; unlock and prune remove them
    warnings: list[str] = field(default_factory=list)

    @property
    def leftover_bytes(self) -> int:
        return sum(item.size or 0 for item in self.leftovers)

    def describe(self) -> str:
        """'2 leftover(s) of interrupted writes (3.0 MiB)', for messages."""
        return f"{len(self.leftovers)} leftover(s) of interrupted writes ({units.size(self.leftover_bytes)})"


def find(repo: Repository, min_age: float) -> Debris:
    """Leftovers at least `min_age` seconds old and the stale locks, by the rule of agent.repo.locks.

    Storage that refuses to list leftovers (credentials without that right) is a warning, not a
    failure: the check or prune around this goes on.
    """
    debris = Debris()
    try:
        debris.leftovers = repo.list_leftovers(min_age)
    except StorageError as exc:
        debris.warnings.append(f"{exc}{f' ({exc.hint})' if exc.hint else ''}; leftovers were not looked for")
    now = datetime.now(UTC)
    unreadable: list[str] = []
    debris.stale_locks = sum(lock.is_stale(now) for lock in repo.list_locks(unreadable))
    debris.unreadable_locks = len(unreadable)
    return debris


def remove(repo: Repository, debris: Debris) -> None:
    """Remove what `find` found; the stale-lock count becomes the number actually removed."""
    for item in debris.leftovers:
        repo.remove_leftover(item)
    debris.stale_locks = repo.remove_locks()
