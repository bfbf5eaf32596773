"""Read the start of a snapshot's image before restoring it: the primary GPT header says how large
the backup table is that must fit behind the last partition of a smaller disk.

Only a shrinking restore of a GPT disk needs this (the manifest records partitions, not the table's
geometry), so it costs one more index load there and nothing elsewhere.
"""

from __future__ import annotations

from agent.errors import TargetError
from agent.repo.chunklist import DATA
from agent.repo.envelope import BlobType
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.source.bytefields import Image
from agent.source.gpt import MAX_GPT_ARRAY_BYTES, find_gpt

_HEAD = 2 * 4096 + MAX_GPT_ARRAY_BYTES  # protective MBR, header and the largest array, 4 KiB sectors


def image_head(repo: Repository, snap: Snapshot, length: int = _HEAD) -> bytes:
    """The first `length` bytes of the snapshot's image (fewer if it is smaller)."""
    length = min(length, snap.size)
    head = bytearray(length)
    index = repo.load_index([])
    for ext in repo.snapshot_extents(index, snap):
        if ext.offset >= length:
            break
        if ext.kind != DATA:
            continue
        loc = index.get(ext.id)
        if loc is None:
            raise TargetError(f"the chunk at image offset {ext.offset} is missing, so the partition table cannot "
                              "be read to fit the disk", hint="run `agent check`; a restore to a disk of the "
                                                              "image's full size does not need it")
        raw = repo.open_blob(BlobType.DATA, ext.id, repo.read_pack_range(loc.pack_id, loc.offset, loc.length),
                             loc.raw_length)
        n = min(len(raw), length - ext.offset)
        head[ext.offset:ext.offset + n] = raw[:n]
    return bytes(head)


def gpt_array_bytes(repo: Repository, snap: Snapshot) -> int:
    """Bytes of the GPT partition entry array, from the snapshot's primary header; TargetError when
    that header is unusable (a smaller disk gets its backup table rebuilt from the primary one)."""
    head = image_head(repo, snap)
    warnings: list[str] = []
    hdr = find_gpt(Image(lambda off, n: head[off:off + n], len(head)), try_backup=False, warnings=warnings)
    if hdr is None:
        raise TargetError("the snapshot's primary GPT header cannot be read ("
                          + ("; ".join(warnings) or "missing") + "), so its table cannot be fitted to a smaller disk",
                          hint=f"restore it to a disk of at least the image's size ({snap.size} bytes)")
    return hdr.num_entries * hdr.entry_size
