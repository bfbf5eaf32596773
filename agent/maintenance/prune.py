"""prune: delete packs no snapshot uses, repack partly used ones, and merge the index.

Concurrency: prune holds an exclusive lock; backups hold shared locks and re-check theirs before
writing a snapshot, so a prune never runs while a backup could still reference what it deletes
(docs/retention.md). Crash safety: new packs, then the new index that supersedes the old segments,
then deletions; an interruption at any point leaves a repository that checks clean, and the next
prune finishes the job. Leftovers of interrupted writes and stale locks go at the end
(agent.maintenance.leftovers). Under S3 Object Lock, packs and index segments whose retention has
not lapsed are neither deleted nor repacked (agent.maintenance.locked): they wait, indexed, for a
prune after that date.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent.config.stamps import rfc3339
from agent.errors import CorruptObject
from agent.maintenance import leftovers
from agent.maintenance.locked import locked_objects
from agent.maintenance.usage import mark_used
from agent.progress import Listener, Warning, ignore
from agent.repo import layout
from agent.repo.damage import DamageRecord
from agent.repo.envelope import BlobType
from agent.repo.index import encode_segment_rows
from agent.repo.packs import PackBuilder, PackEntry
from agent.repo.repository import Repository
from agent.repo.runs import RunRecord
from agent.repo.snapshots import Snapshot, superseded_runs
from agent.repo.writer import adopt_orphan_packs

RUN_RECORD_DAYS = 30  # how long an unfinished run's uploads are kept for it to resume
#: leftovers of interrupted writes younger than this stay: no backup writes while prune holds its
#: exclusive lock, but one whose own lock went stale (a suspended machine) may wake up mid-write
LEFTOVER_MIN_AGE = 3600.0


@dataclass
class PruneResult:
    packs_before: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    bytes_before: int = 0  # in packs
    bytes_freed: int = 0  # measured: stored_before - stored_after (estimated with dry_run)
    stored_before: int = 0  # every object of the repository, as the storage lists their sizes
    stored_after: int = 0
    bytes_written: int = 0
    unused_before: int = 0
    unused_after: int = 0
    segments_replaced: int = 0
    leftovers: int = 0  # temporaries and unfinished uploads of interrupted writes, removed (or to remove)
    leftover_bytes: int = 0
    stale_locks: int = 0  # locks of runs that are gone, removed (or to remove)
    runs_dropped: int = 0  # records of unfinished runs dropped on request (`--unfinished`)
    held_packs: int = 0  # unused packs left alone: their Object Lock retention has not lapsed
    held_bytes: int = 0
    held_segments: int = 0  # superseded index segments left alone for the same reason
    held_until: str | None = None  # when the last of them lapses (RFC 3339 UTC)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}


def run_prune(repo: Repository, *, max_unused: float = 0.05, max_repack: int | None = None, dry_run: bool = False,
              lock_wait: float = 0.0, unfinished: bool = False, now: datetime | None = None,
              listener: Listener = ignore) -> PruneResult:
    """`unfinished` also drops the records of unfinished backup runs, so their uploads go like any
    other unused data instead of waiting RUN_RECORD_DAYS for a run that may never come. `now` is
    the time Object Lock retention is compared with (tests; by default the clock's)."""
    res = PruneResult(dry_run=dry_run)
    with repo.lock(exclusive=True, command="prune", wait=lock_wait):
        res.stored_before = repo.total_stored_bytes()  # with our own lock, which is in the "after" too
        debris = leftovers.find(repo, LEFTOVER_MIN_AGE)
        res.leftovers, res.leftover_bytes = len(debris.leftovers), debris.leftover_bytes
        res.stale_locks = debris.stale_locks
        res.warnings += debris.warnings
        damage, damage_names = repo.load_damage()
        index = repo.load_index(damage=damage)
        segments = repo.list_index_segments()
        stored = repo.list_packs()
        # index what crashed runs (or a lost segment) left unindexed, so that usage decides about
        # them like about any pack; one whose header cannot be read is kept: what it holds is unknown
        adopted = adopt_orphan_packs(repo, index, listener, write=False)
        snaps = repo.list_snapshots()
        lost: dict[str, int] = {}
        used = mark_used(repo, index, snaps, lost)
        for snap_id, n in lost.items():
            res.warnings.append(f"snapshot {snap_id[:8]} references {n} chunk(s) that are lost or in packs "
                                "recorded as damaged; `agent repair packs`, then `agent repair snapshots`")
        damaged_runs: list[str] = []
        runs_kept, runs_done = _split_runs(repo.list_runs(damaged_runs), snaps)
        if unfinished:
            res.runs_dropped = len(runs_kept)
            runs_done += [name for name, _ in runs_kept]
            runs_kept = []
        if damaged_runs:  # unreadable: they protect nothing they can name; removed with the finished ones
            res.warnings.append(f"removing {len(damaged_runs)} damaged run record(s): "
                                + ", ".join(n[:8] for n in damaged_runs))
            runs_done += damaged_runs
        protected = {p for _, r in runs_kept for p in r.packs}

        pack_col = index.column("pack")
        if protected:  # uploads of an unfinished run: the next run resumes from them
            kept = {i for i, p in enumerate(index.pack_ids) if p in protected}
            for r, p in enumerate(pack_col):
                if p in kept:
                    used[r] = 1
        npacks = len(index.pack_ids)
        live_bytes, all_bytes = [0] * npacks, [0] * npacks
        for p, n, u in zip(pack_col, index.column("length"), used):
            all_bytes[p] += n
            if u:
                live_bytes[p] += n
        sizes = index.pack_sizes
        res.packs_before = len(stored)
        res.bytes_before = int(sum(stored.values()))

        unreadable = [p for p in stored if not index.has_pack(p)]
        if unreadable:
            res.warnings.append(f"keeping {len(unreadable)} unindexed pack(s) whose header cannot be read; "
                                "`agent repair packs` salvages them")
        # packs check recorded as damaged stay as they are for `repair packs`, which authenticates
        # every blob before it drops anything: a damage record alone (written with the backup's key,
        # maybe forged by a compromised backup host) must never make prune delete data
        recorded = {i for i, p in enumerate(index.pack_ids) if p in damage.packs and p in stored}
        dead = [i for i in range(npacks) if live_bytes[i] == 0 and i not in recorded]
        partial = [i for i in range(npacks) if 0 < live_bytes[i] < all_bytes[i] and i not in recorded]
        locked = locked_objects(repo, now or datetime.now(UTC), res.warnings)
        # unused packs wait for their retention to lapse. A partly used pack stays locked as long as
        # `agent retain` extends it, so it is repacked anyway where a delete only hides the current
        # version behind a marker (its locked version lapses later); only where deletes remove every
        # version (object_lock=1) would the delete fail, and there it waits too
        waits = dead + partial if repo.capabilities.object_lock else dead
        held = {i for i in waits if layout.pack(index.pack_ids[i]) in locked}
        if held:  # never try to delete what the storage keeps anyway; a later prune will
            dead = [i for i in dead if i not in held]
            partial = [i for i in partial if i not in held]
            res.held_packs = sum(1 for i in held if live_bytes[i] == 0)
            res.held_bytes = sum(sizes[i] - live_bytes[i] for i in held)
            res.held_until = rfc3339(max(locked[layout.pack(index.pack_ids[i])] for i in held))
        unused_total = sum(all_bytes) - sum(live_bytes)
        res.unused_before = unused_total
        remaining_unused = sum(all_bytes[i] - live_bytes[i] for i in partial)
        total_after = sum(sizes[i] for i in range(npacks) if live_bytes[i] > 0)
        repack: list[int] = []
        budget = max_repack if max_repack is not None else float("inf")
        for i in sorted(partial, key=lambda i: all_bytes[i] - live_bytes[i], reverse=True):
            if total_after == 0 or remaining_unused / total_after <= max_unused:
                break
            if live_bytes[i] > budget:
                continue
            budget -= live_bytes[i]
            repack.append(i)
            remaining_unused -= all_bytes[i] - live_bytes[i]
        res.unused_after = remaining_unused
        res.packs_deleted = len(dead)
        res.packs_repacked = len(repack)
        if dry_run:  # an estimate: the packs that go, less what repacking writes again
            res.bytes_freed = (sum(sizes[i] for i in dead + repack if index.pack_ids[i] in stored)
                               - sum(live_bytes[i] for i in repack))
            res.stored_after = res.stored_before - res.bytes_freed
            return res

        # 1. copy live blobs out of packs being repacked (sealed bytes move as they are)
        new_packs: list[tuple[str, int, list[PackEntry]]] = []
        builders = {BlobType.DATA: PackBuilder(), BlobType.META: PackBuilder()}
        repack_set = set(repack)
        by_pack: dict[int, list[int]] = defaultdict(list)
        for r, (p, u) in enumerate(zip(pack_col, used)):
            if u and p in repack_set:
                by_pack[p].append(r)
        lost_blobs: dict[str, set[bytes]] = {}
        cols = [index.column(c) for c in ("offset", "length", "raw", "type")]
        for i in repack:
            pack_id = index.pack_ids[i]
            data = memoryview(repo.read_pack(pack_id))
            for r in by_pack[i]:
                cid = index.row_id(r)
                offset, length, raw, btype = (c[r] for c in cols)
                sealed = data[offset:offset + length]
                try:  # the index, not the pack's header, says where: a damaged header loses nothing
                    repo.open_blob(BlobType(btype), cid, sealed, raw)
                except CorruptObject:  # never copy damage into a new pack; record it instead
                    lost_blobs.setdefault(pack_id, set()).add(cid)
                    continue
                b = builders[BlobType(btype)]
                b.add(btype, cid, sealed, raw)
                if len(b) >= repo.params.pack_size:
                    new_packs.append(repo.store_pack(b))
                    builders[BlobType(btype)] = PackBuilder()
        for b in builders.values():
            if b.count:
                new_packs.append(repo.store_pack(b))
        res.packs_written = len(new_packs)
        res.bytes_written = sum(size for _, size, _ in new_packs)

        # 2. one index for everything that stays, superseding every old segment
        gone = set(dead) | repack_set
        keep_rows = [r for r, p in enumerate(pack_col) if p not in gone]
        current = [name for name in segments if name not in index.superseded]
        if gone or adopted or len(current) > 1:
            # the copies load_index left out of kept damaged packs are written again: the record, not
            # the index, is what keeps them from use
            lost_by_pack: dict[str, list[PackEntry]] = defaultdict(list)
            for cid, loc in index.lost.items():
                lost_by_pack[loc.pack_id].append(PackEntry(loc.type, cid, loc.offset, loc.length, loc.raw_length))
            kept_lost = [(index.pack_ids[i], index.pack_sizes[i], lost_by_pack[index.pack_ids[i]])
                         for i in sorted(recorded) if lost_by_pack[index.pack_ids[i]]]
            repo.write_index_plain(encode_segment_rows(index, keep_rows, new_packs + kept_lost, segments))
            replaced = segments
            res.segments_replaced = len(segments)
        else:  # what an earlier prune replaced but left under Object Lock
            replaced = sorted(index.superseded)
        for name in replaced:
            if layout.index_segment(name) in locked:
                res.held_segments += 1
                res.held_until = max(res.held_until or "", rfc3339(locked[layout.index_segment(name)]) or "")
            else:
                repo.delete_index_segment(name)
        # 3. only now delete packs nothing refers to
        for i in sorted(gone):
            if index.pack_ids[i] in stored:
                repo.delete_pack(index.pack_ids[i])
        for name in runs_done:
            repo.delete_run(name)
        _update_damage(repo, res, damage, damage_names, {index.pack_ids[i] for i in gone}, lost_blobs)
        leftovers.remove(repo, debris)
        res.stale_locks = debris.stale_locks
        # measured, not derived from the plan: new packs, the new index, dropped records all count
        res.stored_after = repo.total_stored_bytes()
        res.bytes_freed = res.stored_before - res.stored_after
    for w in res.warnings:
        listener(Warning(w))
    return res


def _update_damage(repo: Repository, res: PruneResult, damage: DamageRecord, names: list[str], deleted: set[str],
                   lost_blobs: dict[str, set[bytes]]) -> None:
    """Forget damage of packs this prune deleted (their chunks are out of the index now), merge
    the records into one, and report blobs that failed authentication while being repacked."""
    for pack_id, ids in lost_blobs.items():
        res.warnings.append(f"pack {pack_id[:16]}: {len(ids)} blob(s) failed authentication while being repacked "
                            "and were left out; `agent check` lists the snapshots affected")
    new = DamageRecord(packs={p: v for p, v in damage.packs.items() if p not in deleted},
                       snapshots=dict(damage.snapshots), time=datetime.now(UTC).isoformat())
    if new.packs == damage.packs and len(names) <= 1:
        return
    repo.save_damage(new, names)


def _split_runs(runs: list[tuple[str, RunRecord]], snaps: list[Snapshot]) -> tuple[list[tuple[str, RunRecord]],
                                                                                   list[str]]:
    """Records still protecting their uploads, and names of records a complete snapshot took over
    or that are older than RUN_RECORD_DAYS (a source that never completes must not pin data forever)."""
    done = superseded_runs(snaps)
    cutoff = (datetime.now(UTC) - timedelta(days=RUN_RECORD_DAYS)).isoformat()
    kept = [(n, r) for n, r in runs if n not in done and r.stopped >= cutoff]
    kept_names = {n for n, _ in kept}
    return kept, [n for n, _ in runs if n not in kept_names]
