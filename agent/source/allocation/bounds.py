"""Reads and ranges kept inside the partition: an exact read fails with a reason, and free ranges
never reach past the partition's end. The range arithmetic itself is agent.source.skipmap's."""

from __future__ import annotations

from agent.source.allocation.model import Read, ReadWhole
from agent.source.skipmap import merged
from agent.source.skipmap import subtract as _subtract


def exact(read: Read, offset: int, length: int, what: str) -> bytes:
    """`length` bytes at `offset`, or ReadWhole naming `what` when the partition ends first: a
    structure that runs off the end of the partition is damaged, not short."""
    if offset < 0 or length < 0:
        raise ReadWhole(f"{what} out of bounds")
    data = read(offset, length) if length else b""
    if len(data) != length:
        raise ReadWhole(f"{what} out of bounds")
    return data


def clip(free: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Sorted, merged ranges cut to [0, size): a filesystem claiming more than its partition
    must not make the backup skip bytes past the partition's end."""
    return merged((max(start, 0), min(end, size)) for start, end in free)


def subtract(free: list[tuple[int, int]], used: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted disjoint `free` minus arbitrary `used` ranges: metadata known to be in use stays
    used even if an allocation map claims otherwise."""
    return _subtract(free, merged(used))
