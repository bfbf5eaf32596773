"""Repository check: structure always; with read_data, download and authenticate packs and name the
snapshots and image ranges a damaged pack affects. Leftovers of interrupted writes and stale locks
are reported as warnings (prune removes them); check itself never removes anything."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from agent.config import units
from agent.errors import CorruptObject, StorageError
from agent.maintenance import leftovers
from agent.maintenance.prune import LEFTOVER_MIN_AGE
from agent.progress import Advanced, Finished, Listener, Started, ignore
from agent.repo.chunklist import DATA
from agent.repo.damage import DamageRecord
from agent.repo.repository import Repository
from agent.repo.writer import adopt_orphan_packs


@dataclass
class CheckReport:
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    chunks: int = 0
    leftovers: int = 0  # of interrupted writes, as old as prune would remove
    leftover_bytes: int = 0
    stale_locks: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged_packs: dict[str, str] = field(default_factory=dict)  # pack id -> what is wrong
    affected: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # snapshot id -> image ranges

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "snapshots": self.snapshots, "packs": self.packs, "packs_read": self.packs_read,
            "chunks": self.chunks, "leftovers": self.leftovers, "leftover_bytes": self.leftover_bytes,
            "stale_locks": self.stale_locks, "errors": self.errors, "warnings": self.warnings,
            "damaged_packs": self.damaged_packs,
            "affected_snapshots": {k: [list(r) for r in v] for k, v in self.affected.items()},
        }


def run_check(repo: Repository, *, read_data: bool = False, subset: float | None = None,
              part: tuple[int, int] | None = None, listener: Listener = ignore, seed: int | None = None,
              record: bool = True) -> CheckReport:
    """`subset` reads a random share of the packs (a different one each run); `part=(n, t)` reads the
    n-th of t fixed slices, so t nightly runs cover every pack. With `record`, damage found is
    stored (agent.repo.damage) so that the next backup uploads those chunks again."""
    rep = CheckReport()
    repo.verify_storage()
    bad_records: list[tuple[str, str]] = []
    known, record_names = repo.load_damage(bad_records)
    for name, why in bad_records:
        rep.warnings.append(f"damage record {name[:8]} is unreadable ({why}); `agent check --read-data` finds "
                            "that damage again")
    bad_segments: list[tuple[str, str]] = []
    index = repo.load_index(bad_segments, damage=known)
    for name, why in bad_segments:
        rep.errors.append(f"index segment {name[:16]} is damaged ({why}); `agent repair index` rebuilds the index "
                          "(a backup also indexes its packs again)")
    stored = repo.list_packs()
    rep.packs = len(index.pack_ids)
    found: dict[str, tuple[str, frozenset[bytes] | None]] = {}  # damage proven by this check
    for pack_id, size in zip(index.pack_ids, index.pack_sizes):
        if pack_id not in stored:
            rep.errors.append(f"pack {pack_id[:16]} is in the index but missing from storage")
            rep.damaged_packs[pack_id] = "missing"
            found[pack_id] = ("missing", None)
        elif stored[pack_id] != size:
            rep.errors.append(f"pack {pack_id[:16]} has {stored[pack_id]} bytes, the index says {size}")
            rep.damaged_packs[pack_id] = "wrong size (truncated or replaced)"
    _report_debris(repo, rep)
    for key_id, why in repo.damaged_keys():
        rep.errors.append(f"key file {key_id[:8]} is damaged ({why}); its passphrase no longer opens the "
                          f"repository: restore it from a copy, or `agent key remove {key_id[:8]}` and add a new key")
    damaged_runs: list[str] = []
    repo.list_runs(damaged_runs)
    for name in damaged_runs:
        rep.warnings.append(f"run record {name[:8]} is damaged (it only lets an unfinished backup resume); "
                            "`agent prune` removes it")
    orphans = set(stored) - set(index.pack_ids)
    if orphans:
        rep.warnings.append(f"{len(orphans)} pack(s) not in any index (an interrupted backup, or a damaged or "
                            "lost index segment); the next backup indexes and reuses them")
        # judge the snapshots by what the packs hold, as restore and the next backup will (in memory)
        adopt_orphan_packs(repo, index, write=False)

    damaged_blobs: dict[str, set[bytes]] = {}  # pack -> the blobs known bad (else the whole pack counts)
    verified: set[str] = set()
    # read data first, so snapshot ranges can be attributed to damaged packs below
    if read_data or subset is not None or part is not None:
        packs = sorted(set(index.pack_ids) & set(stored))
        if part is not None:
            n, t = part
            packs = [p for p in packs if int(p[:8], 16) % t == n - 1]
        elif subset is not None:
            rng = random.Random(seed)
            k = max(1, round(len(packs) * subset)) if packs else 0
            packs = sorted(rng.sample(packs, min(k, len(packs))))
        listener(Started("check", sum(stored[p] for p in packs)))
        done = 0
        for pack_id in packs:
            try:
                problem, bad_ids = repo.verify_pack(pack_id, partial(index.pack_entries, pack_id))
            except StorageError as exc:  # proves nothing about the pack: reported, never recorded
                rep.errors.append(f"pack {pack_id[:16]} could not be read: {exc}")
                continue
            rep.packs_read += 1
            done += stored[pack_id]
            listener(Advanced(done))
            if problem:
                rep.damaged_packs[pack_id] = problem
                if bad_ids is not None:
                    damaged_blobs[pack_id] = bad_ids
                found[pack_id] = (problem, None if bad_ids is None else frozenset(bad_ids))
                rep.errors.append(f"pack {pack_id[:16]} is damaged: {problem}")
            else:
                verified.add(pack_id)

    damaged_manifests: list[tuple[str, str]] = []
    snaps = repo.list_snapshots(damaged_manifests)
    for name, problem in damaged_manifests:
        rep.errors.append(f"snapshot manifest {name[:8]} is damaged ({problem}); that snapshot cannot be restored, "
                          "the others are not affected; `agent repair snapshots` removes it")
    rep.snapshots = len(snaps) + len(damaged_manifests)
    damaged = set(rep.damaged_packs)
    for snap in snaps:
        ranges: list[tuple[int, int]] = []
        lost: list[int] = []  # image offsets of chunks no pack holds
        recorded = 0  # of those, copies `check` found damaged earlier
        try:
            for ext in repo.snapshot_extents(index, snap):
                if ext.kind != DATA:
                    continue
                rep.chunks += 1
                loc = index.get(ext.id)
                if loc is None:
                    lost.append(ext.offset)
                    recorded += ext.id in index.lost
                    ranges.append((ext.offset, ext.length))
                elif loc.pack_id in damaged and (loc.pack_id not in damaged_blobs
                                                  or ext.id in damaged_blobs[loc.pack_id]):
                    ranges.append((ext.offset, ext.length))
        except CorruptObject as exc:
            if snap.id not in known.snapshots:
                rep.errors.append(f"snapshot {snap.id[:8]}: {exc}")
            ranges.append((0, snap.size))
        if snap.id in known.snapshots and (lost or ranges):
            rep.warnings.append(f"snapshot {snap.id[:8]} is marked damaged by `agent repair snapshots`: "
                                f"{sum(n for _, n in _merge(ranges))} byte(s) lost")
        elif recorded:
            rep.errors.append(f"snapshot {snap.id[:8]}: {len(lost)} chunk(s) are lost ({recorded} in packs found "
                              "damaged); a backup of the same disk uploads them again if it still holds them, "
                              "`agent repair snapshots` marks or repairs the snapshot")
        elif lost:
            more = f" and {len(lost) - 1} more" if len(lost) > 1 else ""
            rep.errors.append(f"snapshot {snap.id[:8]}: chunk at image offset {lost[0]} is not indexed{more}; "
                              "`agent repair snapshots` marks or repairs the snapshot")
        if ranges:
            rep.affected[snap.id] = _merge(ranges)
    if record:
        _record(repo, rep, known, record_names, found, verified, set(stored), {s.id for s in snaps})
    listener(Finished("check"))
    return rep


def _record(repo: Repository, rep: CheckReport, known: DamageRecord, names: list[str],
            found: dict[str, tuple[str, frozenset[bytes] | None]], verified: set[str], stored: set[str],
            snapshots: set[str]) -> None:
    """Store what this check proved (new damage; packs read clean again), so that backups stop
    deduplicating against damaged chunks. Marks of snapshots that no longer exist or that read
    whole again (a backup healed them) are dropped."""
    new = DamageRecord(packs={p: v for p, v in known.packs.items() if p not in verified and p not in found},
                       snapshots={s: r for s, r in known.snapshots.items() if s in snapshots and s in rep.affected},
                       time=datetime.now(UTC).isoformat())
    new.packs.update(found)
    if new.packs == known.packs and new.snapshots == known.snapshots:
        return
    try:
        kept = repo.save_damage(new, names)
    except StorageError as exc:
        rep.warnings.append(f"could not record the damage found, so backups may still reuse damaged chunks: {exc}")
        return
    if kept:
        rep.warnings.append(f"{len(kept)} older damage record(s) could not be removed (append-only credentials?); "
                            "`agent prune` merges them")


def _report_debris(repo: Repository, rep: CheckReport) -> None:
    debris = leftovers.find(repo, LEFTOVER_MIN_AGE)
    rep.leftovers, rep.leftover_bytes = len(debris.leftovers), debris.leftover_bytes
    rep.stale_locks = debris.stale_locks
    rep.warnings += debris.warnings
    if debris.leftovers:
        rep.warnings.append(f"{debris.describe()} older than {units.duration(LEFTOVER_MIN_AGE)}: hidden temporary "
                            "files or unfinished uploads that no snapshot uses; `agent prune` removes them")
    if debris.unreadable_locks:
        rep.warnings.append(f"{debris.unreadable_locks} lock record(s) are unreadable (they block no one); "
                            "`agent unlock` removes them")
    if debris.stale_locks:
        rep.warnings.append(f"{debris.stale_locks} stale lock(s) of runs that are gone (every command ignores "
                            "them); `agent prune` or `agent unlock` removes them")


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if out and out[-1][0] + out[-1][1] >= off:
            start, length = out[-1]
            out[-1] = (start, max(start + length, off + n) - start)
        else:
            out.append((off, n))
    return out
