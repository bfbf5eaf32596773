"""prune: delete packs no snapshot uses, repack partly used ones, and merge the index.

Concurrency: prune holds an exclusive lock; backups hold shared locks and re-check theirs before
writing a snapshot, so a prune never runs while a backup could still reference what it deletes
(docs/retention.md). Crash safety: new packs, then the new index that supersedes the old segments,
then deletions; an interruption at any point leaves a repository that checks clean, and the next
prune finishes the job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent.maintenance.usage import mark_used
from agent.progress import Listener, Warning, ignore
from agent.repo.envelope import BlobType
from agent.repo.index import encode_segment_rows
from agent.repo.packs import PackBuilder, PackEntry
from agent.repo.repository import Repository
from agent.repo.runs import RunRecord
from agent.repo.snapshots import Snapshot, superseded_runs

RUN_RECORD_DAYS = 30  # how long an unfinished run's uploads are kept for it to resume


@dataclass
class PruneResult:
    packs_before: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    bytes_before: int = 0
    bytes_freed: int = 0
    bytes_written: int = 0
    unused_before: int = 0
    unused_after: int = 0
    segments_replaced: int = 0
    runs_dropped: int = 0  # records of unfinished runs dropped on request (`--unfinished`)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}


def run_prune(repo: Repository, *, max_unused: float = 0.05, max_repack: int | None = None, dry_run: bool = False,
              lock_wait: float = 0.0, unfinished: bool = False, listener: Listener = ignore) -> PruneResult:
    """`unfinished` also drops the records of unfinished backup runs, so their uploads go like any
    other unused data instead of waiting RUN_RECORD_DAYS for a run that may never come."""
    res = PruneResult(dry_run=dry_run)
    with repo.lock(exclusive=True, command="prune", wait=lock_wait):
        index = repo.load_index()
        segments = repo.list_index_segments()
        stored = repo.list_packs()
        snaps = repo.list_snapshots()
        used = mark_used(repo, index, snaps)
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

        # left by crashed runs that no record names: no snapshot uses them
        orphans = [p for p in stored if not index.has_pack(p) and p not in protected]
        dead = [i for i in range(npacks) if live_bytes[i] == 0]
        partial = [i for i in range(npacks) if 0 < live_bytes[i] < all_bytes[i]]
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
        res.packs_deleted = len(dead) + len(orphans)
        res.packs_repacked = len(repack)
        res.bytes_freed = sum(sizes[i] for i in dead + repack) + sum(stored[p] for p in orphans)
        if dry_run:
            return res

        # 1. copy live blobs out of packs being repacked (sealed bytes move as they are)
        new_packs: list[tuple[str, int, list[PackEntry]]] = []
        builders = {BlobType.DATA: PackBuilder(), BlobType.META: PackBuilder()}
        repack_set = set(repack)
        by_pack: dict[int, list[int]] = defaultdict(list)
        for r, (p, u) in enumerate(zip(pack_col, used)):
            if u and p in repack_set:
                by_pack[p].append(r)
        for i in repack:
            pack_id = index.pack_ids[i]
            data, pack_entries = repo.read_pack_entries(pack_id)
            entries = {e.id: e for e in pack_entries}
            for r in by_pack[i]:
                e = entries[index.row_id(r)]
                b = builders[BlobType(e.type)]
                b.add(e.type, e.id, data[e.offset:e.offset + e.length], e.raw_length)
                if len(b) >= repo.params.pack_size:
                    new_packs.append(repo.store_pack(b))
                    builders[BlobType(e.type)] = PackBuilder()
        for b in builders.values():
            if b.count:
                new_packs.append(repo.store_pack(b))
        res.packs_written = len(new_packs)
        res.bytes_written = sum(size for _, size, _ in new_packs)

        # 2. one index for everything that stays, superseding every old segment
        gone = set(dead) | repack_set
        keep_rows = [r for r, p in enumerate(pack_col) if p not in gone]
        if gone or orphans or len(segments) > 1:
            repo.write_index_plain(encode_segment_rows(index, keep_rows, new_packs, segments))
            for name in segments:
                repo.delete_index_segment(name)
            res.segments_replaced = len(segments)
        # 3. only now delete packs nothing refers to
        for i in sorted(gone):
            repo.delete_pack(index.pack_ids[i])
        for p in orphans:
            repo.delete_pack(p)
        for name in runs_done:
            repo.delete_run(name)
    for w in res.warnings:
        listener(Warning(w))
    return res


def _split_runs(runs: list[tuple[str, RunRecord]], snaps: list[Snapshot]) -> tuple[list[tuple[str, RunRecord]],
                                                                                   list[str]]:
    """Records still protecting their uploads, and names of records a complete snapshot took over
    or that are older than RUN_RECORD_DAYS (a source that never completes must not pin data forever)."""
    done = superseded_runs(snaps)
    cutoff = (datetime.now(UTC) - timedelta(days=RUN_RECORD_DAYS)).isoformat()
    kept = [(n, r) for n, r in runs if n not in done and r.stopped >= cutoff]
    kept_names = {n for n, _ in kept}
    return kept, [n for n, _ in runs if n not in kept_names]
