"""Free space of the filesystems on a disk, from their own allocation structures, so a backup reads
and stores only the blocks in use (docs/backup.md, "Used blocks only").

One module per filesystem, each with `free_space(read, size) -> Allocation` raising ReadWhole when
it cannot vouch for its answer; `model` holds those two, `bits` turns bitmaps into byte ranges.
"""

from __future__ import annotations

import importlib
from typing import Callable

from agent.source.allocation.model import Allocation

#: filesystem kind, as agent.source.filesystems names it -> module with its free_space
MODULES = {"ext2": "ext", "ext3": "ext", "ext4": "ext", "vfat": "fat", "exfat": "exfat", "swap": "swap",
           "ntfs": "ntfs", "xfs": "xfs"}


def reader_for(kind: str) -> Callable[..., Allocation] | None:
    """The free-space reader for a filesystem kind, or None when there is none (imported on use:
    a reader not written yet just means that filesystem is read whole)."""
    name = MODULES.get(kind)
    if name is None:
        return None
    full = f"agent.source.allocation.{name}"
    try:
        module = importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name != full:
            raise
        return None
    return module.free_space
