"""Which source snapshots a copy takes, and which of them the target already holds."""

from __future__ import annotations

from datetime import datetime

from agent.copy.options import CopyOptions
from agent.errors import SnapshotNotFound
from agent.repo.snapshots import Snapshot, filter_snapshots, resolve

#: stats key of a manifest written by a copy with different keys: the source snapshot's id
COPIED_FROM = "copied_from"


def select(snaps: list[Snapshot], opts: CopyOptions) -> list[Snapshot]:
    """The snapshots to copy, oldest first (parents before children: the target's chain follows)."""
    chosen = filter_snapshots(snaps, host=opts.host, source=opts.source, tags=opts.tags)
    if opts.ids:
        picked = {s.id: s for s in (resolve(chosen, ref) for ref in opts.ids)}
        chosen = sorted(picked.values(), key=lambda s: s.time)
    if opts.at is not None:
        chosen = newest_at(chosen, opts.at)
    return chosen


def newest_at(snaps: list[Snapshot], at: datetime) -> list[Snapshot]:
    """Per host and source, the newest snapshot at or before `at`."""
    best: dict[tuple[str, str], Snapshot] = {}
    for s in snaps:
        key = (s.host, s.source_path)
        if s.time <= at and (key not in best or s.time > best[key].time):
            best[key] = s
    if not best:
        raise SnapshotNotFound(f"no snapshot at or before {at.astimezone().isoformat(timespec='seconds')}")
    return sorted(best.values(), key=lambda s: s.time)


def copied_from(snap: Snapshot) -> str | None:
    value = snap.stats.get(COPIED_FROM)
    return value if isinstance(value, str) else None


def _identity(snap: Snapshot) -> tuple:
    return snap.host, snap.source_path, snap.time, snap.size


class TargetSnapshots:
    """The target's snapshots, found by the source snapshot they copy: the same id (a replica),
    the `copied_from` note (different keys), or the same host, source, time and size."""

    def __init__(self, snaps: list[Snapshot]) -> None:
        self.by_id = {s.id: s for s in snaps}
        self._by_origin = {o: s for s in snaps if (o := copied_from(s))}
        self._by_identity = {_identity(s): s for s in snaps}

    def copy_of(self, src: Snapshot) -> Snapshot | None:
        return self.by_id.get(src.id) or self._by_origin.get(src.id) or self._by_identity.get(_identity(src))

    def add(self, src: Snapshot, copy: Snapshot) -> None:
        self.by_id[copy.id] = copy
        self._by_origin[src.id] = copy
        self._by_identity[_identity(copy)] = copy
