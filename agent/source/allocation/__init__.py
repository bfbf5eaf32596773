"""Free space of the filesystems on a disk, from their own allocation structures, so a backup reads
and stores only the blocks in use (docs/backup.md, "Used blocks only").

One module per filesystem, each with `free_space(read, size) -> Allocation` raising ReadWhole when
it cannot vouch for its answer; `model` holds those two, `bits` turns bitmaps into byte ranges.
"""

from __future__ import annotations

import importlib
from typing import Callable

_MODULES = {"ext2": "ext", "ext3": "ext", "ext4": "ext", "vfat": "fat", "exfat": "exfat", "swap": "swap",
            "ntfs": "ntfs", "xfs": "xfs"}


def reader_for(kind: str) -> Callable | None:
    """The free-space reader for a filesystem kind (agent.source.filesystems' names); None if none."""
    name = _MODULES.get(kind)
    if name is None:
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}").free_space
    except ModuleNotFoundError:
        return None
