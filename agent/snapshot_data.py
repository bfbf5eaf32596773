"""Read a snapshot's chunk list back from the repository and verify it against the manifest digest."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from crypto.ids import keyed_hasher
from agent.errors import CorruptObject, UsageError
from agent.repo.chunklist import DATA, Extent, decode_group, extents
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot


def load_chunk_list(repo: Repository, index: ChunkIndex, snap: Snapshot) -> list[np.ndarray]:
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
    total = sum(int(g["length"].sum()) for g in groups)
    if total != snap.size:
        raise CorruptObject(f"snapshot {snap.id[:8]}: chunk list covers {total} bytes, image is {snap.size}")
    return groups


def snapshot_extents(repo: Repository, index: ChunkIndex, snap: Snapshot) -> Iterator[Extent]:
    return extents(load_chunk_list(repo, index, snap))


def mark_used(repo: Repository, index, snaps: list[Snapshot]) -> np.ndarray:
    """One byte per indexed chunk: 1 where some snapshot uses it (vectorised, bounded per chunk)."""
    used = np.zeros(len(index), dtype=np.uint8)
    for snap in snaps:
        meta_ids = np.frombuffer(b"".join(bytes.fromhex(h) for h in snap.chunk_list), dtype="V32")
        rows = index.rows_of(meta_ids)
        if (rows < 0).any():
            raise UsageError(f"snapshot {snap.id[:8]} references metadata missing from the index; run "
                             "`agent check` before pruning")
        used[rows] = 1
        for group in load_chunk_list(repo, index, snap):
            data = group[group["kind"] == DATA]
            rows = index.rows_of(data["id"])
            if (rows < 0).any():
                raise UsageError(f"snapshot {snap.id[:8]} references chunks missing from the index; run "
                                 "`agent check` before pruning")
            used[rows] = 1
    return used
