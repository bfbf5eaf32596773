"""`repair snapshots`: snapshots that reference chunks no pack holds any more.

Never silent, two ways (as restic's `repair snapshots` offers for files):
- by default each affected snapshot is kept and marked damaged in a damage record, with the image
  ranges that are lost: listings and restores say so, `check` reports it as a warning from then
  on, and a later backup that uploads the chunks again lifts the mark (check drops it);
- with `zero_lost`, a repaired snapshot replaces it: the same image with the lost ranges as zero
  runs, tagged `repaired`, its manifest naming the original and the ranges. A snapshot whose chunk
  list itself is lost has nothing to repair from and is removed.
Manifests that fail authentication cannot be read by anything and are removed either way.
"""

from __future__ import annotations

from dataclasses import replace

from agent.errors import CorruptObject
from agent.maintenance.repair_report import RepairReport
from agent.progress import Listener, ignore
from agent.repo.chunklist import DATA
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.repo.writer import BlobWriter, adopt_orphan_packs

REPAIRED_TAG = "repaired"


def run_repair_snapshots(repo: Repository, *, zero_lost: bool = False, dry_run: bool = False, lock_wait: float = 0.0,
                         listener: Listener = ignore) -> RepairReport:
    rep = RepairReport("snapshots", dry_run=dry_run)
    with repo.lock(exclusive=True, command="repair snapshots", wait=lock_wait):
        repo.verify_storage()
        damage, damage_names = repo.load_damage()
        index = repo.load_index(damage=damage)
        adopt_orphan_packs(repo, index, listener, write=False)  # chunks in unindexed packs are not lost
        damaged_manifests: list[tuple[str, str]] = []
        snaps = repo.list_snapshots(damaged_manifests)
        for name, why in damaged_manifests:
            rep.actions.append(f"remove snapshot manifest {name[:8]}: {why}; nothing can read it")
            rep.count("manifests_removed")
            if not dry_run:
                repo.delete_snapshot(name)
        marks = dict(damage.snapshots)
        for snap in snaps:
            try:
                lost = _lost_ranges(repo, index, snap)
            except CorruptObject as exc:
                _unreadable(repo, rep, marks, snap, str(exc), zero_lost, dry_run)
                continue
            marks.pop(snap.id, None)
            if not lost:
                continue
            size = sum(n for _, n in lost)
            if zero_lost:
                rep.actions.append(f"replace snapshot {snap.id[:8]} by a repaired one: {size} byte(s) in "
                                   f"{len(lost)} range(s) read as zeros")
                rep.count("snapshots_repaired")
                if not dry_run:
                    new_id = _write_repaired(repo, index, snap, lost)
                    repo.delete_snapshot(snap.id)
                    rep.actions.append(f"snapshot {new_id[:8]} replaces {snap.id[:8]}")
            else:
                rep.actions.append(f"mark snapshot {snap.id[:8]} damaged: {size} byte(s) in {len(lost)} range(s) "
                                   "are lost")
                rep.count("snapshots_marked")
                marks[snap.id] = lost
        if rep.counts.get("snapshots_marked"):
            rep.warnings.append("marked snapshots still restore with --ignore-errors (lost ranges read as zeros); "
                                "`agent repair snapshots --zero-lost` replaces them by repaired ones")
        if not dry_run and marks != damage.snapshots:
            damage.snapshots = marks
            repo.save_damage(damage, damage_names)
    return rep


def _lost_ranges(repo: Repository, index: ChunkIndex, snap: Snapshot) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for ext in repo.snapshot_extents(index, snap):
        if ext.kind == DATA and ext.id not in index:
            if out and out[-1][0] + out[-1][1] == ext.offset:
                out[-1] = (out[-1][0], out[-1][1] + ext.length)
            else:
                out.append((ext.offset, ext.length))
    return out


def _unreadable(repo: Repository, rep: RepairReport, marks: dict, snap: Snapshot, why: str, zero_lost: bool,
                dry_run: bool) -> None:
    """A snapshot whose chunk list is lost: nothing of its image can be found."""
    if zero_lost:
        rep.actions.append(f"remove snapshot {snap.id[:8]}: its chunk list is lost ({why}); nothing of it can be "
                           "restored")
        rep.count("snapshots_removed")
        if not dry_run:
            repo.delete_snapshot(snap.id)
        marks.pop(snap.id, None)
    else:
        rep.actions.append(f"mark snapshot {snap.id[:8]} damaged: its chunk list is lost ({why})")
        rep.count("snapshots_marked")
        marks[snap.id] = [(0, snap.size)]


def _write_repaired(repo: Repository, index: ChunkIndex, snap: Snapshot, lost: list[tuple[int, int]]) -> str:
    """The same image with lost chunks as zero runs: a new chunk list (its groups deduplicate with
    the old ones wherever nothing was lost) and a manifest that says what was repaired."""
    records = repo.chunk_list_writer()
    for ext in repo.snapshot_extents(index, snap):
        if ext.kind == DATA and ext.id in index:
            records.add_data(ext.length, ext.id)
        else:
            records.add_zero(ext.length)
    records.finish()
    writer = BlobWriter(repo, index, workers=1, uploads=1, checkpoint_bytes=1 << 62)
    try:
        meta_ids = []
        for group in records.ready:
            cid = repo.chunk_id(group)
            meta_ids.append(cid.hex())
            writer.add_if_new(BlobType.META, cid, group)
        writer.finish()
    finally:
        writer.close()
    fixed = replace(snap, digest=records.digest(), chunk_list=meta_ids, id="",
                    tags=[*snap.tags, REPAIRED_TAG] if REPAIRED_TAG not in snap.tags else list(snap.tags),
                    repaired={"from": snap.id, "lost": [list(r) for r in lost]})
    return repo.save_snapshot(fixed)
