"""Small helpers every reader needs: exact reads that fail with a reason, and free ranges kept
inside the partition."""

from __future__ import annotations

from agent.source.allocation.model import Read, ReadWhole


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
    out: list[tuple[int, int]] = []
    for start, end in sorted(free):
        start, end = max(start, 0), min(end, size)
        if start >= end:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(free: list[tuple[int, int]], used: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted disjoint `free` minus arbitrary `used` ranges: metadata known to be in use stays
    used even if an allocation map claims otherwise."""
    out: list[tuple[int, int]] = []
    cuts = clip(used, 1 << 63)
    i = 0
    for start, end in free:
        while i < len(cuts) and cuts[i][1] <= start:
            i += 1
        j = i
        while j < len(cuts) and cuts[j][0] < end:
            if cuts[j][0] > start:
                out.append((start, cuts[j][0]))
            start = max(start, cuts[j][1])
            j += 1
        if start < end:
            out.append((start, end))
    return out
