"""Which indexed chunks live snapshots use: what prune keeps and stats count."""

from __future__ import annotations

from agent.errors import CorruptObject
from agent.repo.chunklist import DATA, records
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot


def mark_used(repo: Repository, index: ChunkIndex, snaps: list[Snapshot]) -> bytearray:
    """One byte per indexed chunk (rows as in index.rows_of): 1 where some snapshot uses it.

    Snapshots of one disk share most chunk-list groups (they are content-defined and deduplicated),
    so each distinct group is looked up once: pruning 30 nightly snapshots costs about as much as
    looking up one plus the nights' changes.
    """
    used = bytearray(len(index))
    seen: set[str] = set()
    for snap in snaps:
        meta_rows = index.rows_of(bytes.fromhex(h) for h in snap.chunk_list)
        if min(meta_rows, default=0) < 0:
            raise CorruptObject(f"snapshot {snap.id[:8]} references metadata missing from the index; run "
                             "`agent check` before pruning")
        groups = repo.load_chunk_list(index, snap)  # every snapshot's list is read and verified
        fresh = [g for h, g in zip(snap.chunk_list, groups) if h not in seen]
        seen.update(snap.chunk_list)
        rows = index.rows_of(cid for kind, _, cid in records(fresh) if kind == DATA)
        if min(rows, default=0) < 0:
            raise CorruptObject(f"snapshot {snap.id[:8]} references chunks missing from the index; run "
                             "`agent check` before pruning")
        for r in meta_rows + rows:
            used[r] = 1
    return used
