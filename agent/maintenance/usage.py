"""Which indexed chunks live snapshots use: what prune keeps and stats count."""

from __future__ import annotations

from agent.errors import CorruptObject
from agent.repo.chunklist import DATA, records
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot


def mark_used(repo: Repository, index: ChunkIndex, snaps: list[Snapshot],
              lost: dict[str, int] | None = None) -> bytearray:
    """One byte per indexed chunk (rows as in index.rows_of): 1 where some snapshot uses it.

    A data chunk no pack holds raises CorruptObject, unless `lost` is given: then it is counted
    there per snapshot. Prune passes it once every stored pack is indexed (so no pack it could
    delete holds such a chunk); a chunk list that cannot be read always raises, since what it
    would keep is unknown.

    Snapshots of one disk share most chunk-list groups (they are content-defined and deduplicated),
    so each distinct group is looked up once: pruning 30 nightly snapshots costs about as much as
    looking up one plus the nights' changes.
    """
    used = bytearray(len(index))
    seen: set[str] = set()
    for snap in snaps:
        meta_ids = [bytes.fromhex(h) for h in snap.chunk_list]
        meta_rows = index.rows_of(meta_ids)
        # a chunk-list blob only in a pack recorded as damaged is still read (and authenticated) below
        if any(r < 0 and cid not in index.lost for r, cid in zip(meta_rows, meta_ids)):
            raise CorruptObject(f"snapshot {snap.id[:8]} references a chunk list missing from the index",
                                hint="`agent repair snapshots --zero-lost` removes snapshots whose chunk list is "
                                     "lost; `agent check` lists them")
        try:
            groups = repo.load_chunk_list(index, snap)  # every snapshot's list is read and verified
        except CorruptObject as exc:
            raise CorruptObject(str(exc), hint="`agent repair snapshots --zero-lost` removes snapshots whose chunk "
                                               "list is lost; `agent check` lists them") from None
        fresh = [g for h, g in zip(snap.chunk_list, groups) if h not in seen]
        seen.update(snap.chunk_list)
        rows = index.rows_of(cid for kind, _, cid in records(fresh) if kind == DATA)
        if min(rows, default=0) < 0:
            if lost is None:
                raise CorruptObject(f"snapshot {snap.id[:8]} references chunks missing from the index; run "
                                    "`agent check` before pruning")
            lost[snap.id] = rows.count(-1)
            rows = [r for r in rows if r >= 0]
        for r in meta_rows + rows:
            if r >= 0:
                used[r] = 1
    return used
