"""An image file that has not changed since the last snapshot is not read again.

A file's device, inode, size, modification and change times together change on every write (the
change time cannot be set back without changing the clock), which is what restic relies on for
its files too. When they match the parent's, and the parent was read with the same choices and
every chunk it needs is still indexed, the new snapshot takes the parent's chunk list as it is.
"""

from __future__ import annotations

from agent.errors import CorruptObject
from agent.repo.chunklist import DATA, records
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.source.device import Source
from agent.source.reading import ReadingPlan


def file_state(src: Source) -> dict | None:
    """What the manifest records to tell an unchanged image file (None for a block device: writes to
    a disk change none of its times)."""
    if src.kind != "file" or src.opened is None:
        return None
    mtime_ns, ctime_ns, size, ino = src.opened
    return {"dev": src.identity.get("st_dev"), "ino": ino, "size": size, "mtime_ns": mtime_ns,
            "ctime_ns": ctime_ns}


def reusable_parent(repo: Repository, index: ChunkIndex, src: Source, parent: Snapshot | None,
                    plan: ReadingPlan) -> Snapshot | None:
    """The parent, when `src` is an image file unchanged since it was taken with the same reading
    choices and all its chunks are still in the repository; else None (the file is read)."""
    state = file_state(src)
    if state is None or parent is None or parent.repaired or parent.changed_during_backup:
        return None
    if parent.source.get("state") != state or parent.size != src.size:
        return None
    if not plan.same_choice(parent.reading):
        return None
    try:
        groups = repo.load_chunk_list(index, parent)
    except CorruptObject:
        return None
    ids = [cid for kind, _, cid in records(groups) if kind == DATA]
    if not all(index.known(ids)):
        return None
    return parent
