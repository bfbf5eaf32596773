"""The target's id of each source chunk when the keys differ (ids are keyed hashes).

Learned without reading data: a snapshot copied earlier has the same records in both repositories,
in the same order and of the same lengths, so zipping its two chunk lists pairs the ids. Chunks
no earlier copy holds are read, opened and hashed with the target's key (agent.copy.run).
"""

from __future__ import annotations

from agent.progress import Listener, Warning
from agent.repo.chunklist import records
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot

#: earlier copies of the same host and source paired per snapshot: a night mostly repeats the last
EARLIER_PAIRS = 2


def learn(mapping: dict[bytes, bytes], src: Repository, sindex: ChunkIndex, src_snap: Snapshot,
          dst: Repository, dindex: ChunkIndex, dst_snap: Snapshot, listener: Listener) -> None:
    """Add the id pairs of `src_snap` and its copy `dst_snap` (a pair that does not line up is skipped)."""
    from agent.errors import CorruptObject

    try:
        left = list(records(src.load_chunk_list(sindex, src_snap)))
        right = list(records(dst.load_chunk_list(dindex, dst_snap)))
    except CorruptObject as exc:
        listener(Warning(f"not reusing the copy {dst_snap.id[:8]} of {src_snap.id[:8]}: {exc}"))
        return
    if len(left) != len(right) or any(a[:2] != b[:2] for a, b in zip(left, right)):
        listener(Warning(f"snapshot {dst_snap.id[:8]} is not a record-for-record copy of {src_snap.id[:8]}; "
                         "its chunks are read again"))
        return
    for (_, _, a), (_, _, b) in zip(left, right):
        mapping[a] = b
