"""Read a snapshot's chunk list back from the repository and verify it against the manifest digest."""

from __future__ import annotations

from typing import Iterator

from crypto.ids import keyed_hasher
from agent.errors import CorruptObject, UsageError
from agent.repo.chunklist import DATA, Extent, decode_group, extents, records
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot


def load_chunk_list(repo: Repository, index: ChunkIndex, snap: Snapshot) -> list[bytes]:
    """The snapshot's record groups; raises CorruptObject when any is missing, damaged or tampered with."""
    groups = []
    digest = keyed_hasher(repo.master.id_key)
    for hex_id in snap.chunk_list:
        cid = bytes.fromhex(hex_id)
        loc = index.get(cid)
        if loc is None:
            raise CorruptObject(f"snapshot {snap.id[:8]}: chunk-list blob {hex_id[:16]} is not in the index")
        sealed = repo.read_pack_range(loc.pack_id, loc.offset, loc.length)
        data = repo.open_blob(BlobType.META, cid, sealed, loc.raw_length)
        digest.update(data)
        groups.append(decode_group(data, hex_id))
    if digest.hexdigest() != snap.digest:
        raise CorruptObject(f"snapshot {snap.id[:8]}: chunk list does not match the manifest digest")
    total = sum(length for _, length, _ in records(groups))
    if total != snap.size:
        raise CorruptObject(f"snapshot {snap.id[:8]}: chunk list covers {total} bytes, image is {snap.size}")
    return groups


def snapshot_extents(repo: Repository, index: ChunkIndex, snap: Snapshot) -> Iterator[Extent]:
    return extents(load_chunk_list(repo, index, snap))


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
            raise UsageError(f"snapshot {snap.id[:8]} references metadata missing from the index; run "
                             "`agent check` before pruning")
        groups = load_chunk_list(repo, index, snap)  # every snapshot's list is read and verified
        fresh = [g for h, g in zip(snap.chunk_list, groups) if h not in seen]
        seen.update(snap.chunk_list)
        rows = index.rows_of(cid for kind, _, cid in records(fresh) if kind == DATA)
        if min(rows, default=0) < 0:
            raise UsageError(f"snapshot {snap.id[:8]} references chunks missing from the index; run "
                             "`agent check` before pruning")
        for r in meta_rows + rows:
            used[r] = 1
    return used
