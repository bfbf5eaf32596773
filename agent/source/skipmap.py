"""Ranges of a disk that a backup does not store: free space of its filesystems, swap, partitions
left out. They are recorded as zeros in the chunk list, so a restore writes zeros there.

Large ranges are not read at all (they end the data extents, like the holes of a sparse file);
small ones, scattered between used blocks, are read with their neighbours in one request and
zeroed in the buffer before cutting, so free space costs no extra requests and cuts no extra
chunks, and its old contents are never stored.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, Iterator

#: free ranges at least this long are skipped, not read (agent.source.device.HOLE_MIN explains why
#: shorter ones are not: each skip ends a data extent and so forces a chunk cut)
SKIP_MIN = 1 << 20
_ALIGN = 4096  # skipped ranges keep reads aligned for O_DIRECT; the slivers are zeroed instead
_ZEROS = bytes(1 << 20)  # copied from, never written


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint [start, end) ranges, touching ones joined; empty ones dropped."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def subtract(ranges: Iterable[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`ranges` minus the sorted, disjoint `cut` ranges."""
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        k = max(0, bisect_right(cut, (start, start)) - 1)
        pos = start
        while k < len(cut) and cut[k][0] < end:
            lo, hi = cut[k]
            if hi > pos:
                if lo > pos:
                    out.append((pos, lo))
                pos = max(pos, hi)
            k += 1
        if pos < end:
            out.append((pos, end))
    return out


class SkipMap:
    """Image ranges that read as zeros in the snapshot."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self.ranges = merged(ranges)
        self._starts = [start for start, _ in self.ranges]
        skip = ((-(-s // _ALIGN) * _ALIGN, e // _ALIGN * _ALIGN) for s, e in self.ranges)
        self.skipped = [(s, e) for s, e in skip if e - s >= SKIP_MIN]

    def __bool__(self) -> bool:
        return bool(self.ranges)

    @property
    def total(self) -> int:
        return sum(end - start for start, end in self.ranges)

    def extents(self, data: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        """The source's data extents minus the ranges long enough to skip unread."""
        if not self.skipped:
            yield from data
            return
        yield from subtract(data, self.skipped)

    def mask(self, view: memoryview, offset: int) -> None:
        """Zero the parts of `view` (image bytes from `offset`) that lie in a range."""
        end = offset + len(view)
        k = max(0, bisect_right(self._starts, offset) - 1)
        while k < len(self.ranges) and self.ranges[k][0] < end:
            lo, hi = max(self.ranges[k][0], offset), min(self.ranges[k][1], end)
            while lo < hi:
                n = min(hi - lo, len(_ZEROS))
                view[lo - offset:lo - offset + n] = _ZEROS[:n]
                lo += n
            k += 1
