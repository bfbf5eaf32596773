"""`agent verify`: read every chunk of a snapshot; with fsck, check each partition's filesystem.

The chunks come first: they say whether the snapshot can be restored at all, and a damaged range
explains a filesystem that then fails its check. The partitions are those recorded in the
snapshot's manifest (as `agent ls` lists them); a snapshot without a table is one filesystem,
probed from the image. A shared lock is held throughout, so a prune cannot remove packs midway.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from agent.errors import AgentError
from agent.progress import Listener, Warning, ignore
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.verify import checkers
from agent.verify.chunks import read_every_chunk
from agent.verify.result import CLEAN, DAMAGED, NOT_CHECKED, PartitionCheck, VerifyResult


@dataclass
class VerifyOptions:
    fsck: bool = False
    use_fuse: bool = True  # False: always restore each partition into a temporary file
    scratch: Path | None = None  # where temporary partition files go; default: the repository's cache directory
    lock_wait: float = 1800.0


def run_verify(repo: Repository, snap: Snapshot, opts: VerifyOptions | None = None,
               listener: Listener = ignore) -> VerifyResult:
    opts = opts or VerifyOptions()
    t0 = time.monotonic()
    with repo.lock(exclusive=False, command="verify", wait=opts.lock_wait):
        checked, zeros, damaged = read_every_chunk(repo, snap, listener)
        parts = _check_filesystems(repo, snap, opts, listener) if opts.fsck else None
    return VerifyResult(snapshot_id=snap.id, size=snap.size, checked_bytes=checked, zero_bytes=zeros,
                        damaged=damaged, partitions=parts, duration_s=round(time.monotonic() - t0, 3))


def _targets(repo: Repository, snap: Snapshot, index) -> list[PartitionCheck]:
    """One pending check per recorded partition, or for the whole image when it has no table."""
    if snap.partitions:
        return [PartitionCheck(number=int(p["number"]), label=p.get("fs_label") or p.get("name") or None,
                               filesystem=None if not snap.holds(p) else p.get("filesystem"), start=int(p["start"]),
                               size=int(p["size"]), status=NOT_CHECKED,
                               reason=None if snap.holds(p) else "not backed up (backup --partitions)")
                for p in snap.partitions]
    from agent.browse.image import SnapshotImage
    from agent.source.bytefields import Image
    from agent.source.filesystems import with_filesystem

    with SnapshotImage(repo, index, snap) as image:
        try:
            found = with_filesystem(Image(image.read, snap.size), number=0, start=0, size=snap.size, type_id="",
                                    type_name="", name="", guid=None)
        except AgentError:  # the superblock's chunk is damaged: listed with the damaged ranges
            return [PartitionCheck(None, None, None, 0, snap.size, NOT_CHECKED,
                                   reason="the start of the image cannot be read")]
    return [PartitionCheck(None, found.fs_label, found.filesystem, 0, snap.size, NOT_CHECKED)]


def _check_filesystems(repo: Repository, snap: Snapshot, opts: VerifyOptions,
                       listener: Listener) -> list[PartitionCheck]:
    from agent.verify.expose import FuseUnavailable, fuse_tree, temporary_partition

    index = repo.load_index([])
    results = _targets(repo, snap, index)
    todo = []
    for r in results:
        checker, why = checkers.choose(r.filesystem)
        if checker is None:
            r.reason = r.reason or why
        else:
            todo.append((r, checker))
    if not todo:
        return results
    with ExitStack() as stack:
        mnt: Path | None = None
        if opts.use_fuse:
            try:
                mnt = stack.enter_context(fuse_tree(repo, index, snap))
            except FuseUnavailable as exc:
                listener(Warning(f"{exc}: each partition is restored into a temporary file in the cache "
                                 "directory to be checked, then removed"))
        for r, checker in todo:
            name = "disk" if r.number is None else f"part{r.number}"
            if mnt is not None:
                r.via = "fuse"
                _check(r, checker, str(mnt / f"{name}.img"))
            else:
                r.via = "temporary file"
                scratch = opts.scratch or repo.cache.root or Path(tempfile.gettempdir())
                with temporary_partition(repo, snap, r.start, r.size, scratch, name) as path:
                    _check(r, checker, str(path))
    return results


def _check(r: PartitionCheck, checker: checkers.Checker, image: str) -> None:
    r.checker = checker.command
    r.exit_status, r.output = checkers.run(checker, image)
    r.status = CLEAN if r.exit_status == 0 else DAMAGED
