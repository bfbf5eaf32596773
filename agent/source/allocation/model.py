"""What a filesystem reader reports: the byte ranges of a partition that hold no live data.

Free ranges are not read and not stored by a backup (agent.backup); they restore as zeros. A
reader that cannot vouch for its answer (unknown feature, dirty journal or log, damaged
metadata) raises ReadWhole with the reason, and the partition is read byte for byte instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

#: read(offset, length) inside the partition; may return fewer bytes only at its end
Read = Callable[[int, int], bytes]


class ReadWhole(Exception):
    """This filesystem must be read whole; str(exc) says why, in words for the backup's output."""


@dataclass(frozen=True)
class Allocation:
    """Free space of one filesystem, as found in its own allocation structures."""

    #: sorted, disjoint [start, end) byte ranges in the partition that hold no live data
    free: list[tuple[int, int]]
    #: how the answer was found, for the snapshot and `agent ls` ("ext4 block bitmaps")
    method: str
    #: files whose clusters count as free (NTFS pagefile.sys ...): (name, bytes)
    excluded: list[tuple[str, int]] = field(default_factory=list)

    @property
    def free_bytes(self) -> int:
        return sum(end - start for start, end in self.free)
