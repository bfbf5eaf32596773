"""Incremental backups of a mostly unchanged disk: reuse the parent snapshot's chunk boundaries.

A content-defined cut depends only on the bytes since the previous cut, so wherever the disk still
holds the parent's bytes, the parent's chunks are exactly what the chunker would produce now.
Checking a candidate means hashing it, which the pool does on both cores and which is needed for
its id anyway; cutting is serial. So the chunker runs only from the first chunk that differs until
one of its cuts lands on a parent boundary again, and the result is identical to a full cut.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Callable, Sequence

import pyfastcdc

from agent.repo.chunklist import DATA, records

Chunk = tuple[int, int, memoryview, "bytes | None"]  # image offset, length, bytes, id when already known
_BATCH = 64  # candidates hashed per round trip to the pool


class ParentChunks:
    """The parent's data chunks as sorted columns (49 bytes per chunk), looked up by start offset."""

    def __init__(self, groups: Sequence[bytes]) -> None:
        self.starts, self.lengths, self.maybe_forced = array("Q"), array("Q"), bytearray()
        ids = []
        pos = 0
        prev_data = False
        for kind, length, cid in records(groups):
            if kind == DATA:
                if prev_data:
                    self.maybe_forced[-1] = 0  # followed by data: its end was a real cut
                self.starts.append(pos)
                self.lengths.append(length)
                # followed by zeros or the image's end, it may have been cut there only because a
                # data extent ended (a hole followed): not a cut the chunker makes where data goes on
                self.maybe_forced.append(1)
                ids.append(cid)
            prev_data = kind == DATA
            pos += length
        self.ids = b"".join(ids)

    def __len__(self) -> int:
        return len(self.starts)

    def id(self, i: int) -> bytes:
        return self.ids[32 * i:32 * i + 32]

    def find(self, pos: int) -> int:
        i = bisect_left(self.starts, pos)
        return i if i < len(self.starts) and self.starts[i] == pos else -1


class GuidedCutter:
    def __init__(self, cdc: pyfastcdc.FastCDC, parent: ParentChunks, max_size: int,
                 hash_many: Callable[[list[memoryview]], list[bytes]]) -> None:
        self.cdc, self.parent, self.hash_many = cdc, parent, hash_many
        self.window = 4 * max_size  # cut this far at a time after a mismatch: at least three real cuts
        self.reused = 0  # bytes taken from the parent without cutting (for the profile note)

    def cut(self, view: memoryview, base: int, end: int, extent_ends: bool) -> list[Chunk]:
        """Chunks covering view (image bytes base..end); the last one ends at `end`."""
        chunks: list[Chunk] = []
        pos = base
        while pos < end:
            reused = self._reuse(view, base, pos, end, extent_ends)
            if reused:
                chunks += reused
                pos = reused[-1][0] + reused[-1][1]
                continue
            wend = min(end, pos + self.window)
            cut = [(pos + c.offset, c.length, c.data, None) for c in self.cdc.cut_buf(view[pos - base:wend - base])]
            if wend < end:
                cut.pop()  # ends where the window does, not at a real cut
            for chunk in cut:
                chunks.append(chunk)
                pos = chunk[0] + chunk[1]
                if pos < end and self.parent.find(pos) >= 0:
                    break  # in step with the parent again: try its chunks from here
        return chunks

    def _reuse(self, view: memoryview, base: int, pos: int, end: int, extent_ends: bool) -> list[Chunk]:
        i = self.parent.find(pos)
        if i < 0:
            return []
        starts, lengths = self.parent.starts, self.parent.lengths
        cands: list[tuple[int, int, memoryview, int]] = []
        p = pos
        while i < len(starts) and starts[i] == p and p + lengths[i] <= end and len(cands) < _BATCH:
            n = lengths[i]
            if self.parent.maybe_forced[i] and not (extent_ends and p + n == end):
                break
            cands.append((p, n, view[p - base:p - base + n], i))
            p += n
            i += 1
        if not cands:
            return []
        out: list[Chunk] = []
        for (p, n, v, i), cid in zip(cands, self.hash_many([c[2] for c in cands])):
            if cid != self.parent.id(i):
                break
            out.append((p, n, v, cid))
            self.reused += n
        return out
