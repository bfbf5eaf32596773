"""Incremental backups of a mostly unchanged disk: reuse the parent snapshot's chunk boundaries.

A content-defined cut depends only on the bytes since the previous cut, so wherever the disk still
holds the parent's bytes, the parent's chunks are exactly what the chunker would produce now.
Checking a candidate means hashing it, which the pool does on both cores and which is needed for
its id anyway; cutting is serial. So the chunker runs only from the first chunk that differs until
one of its cuts lands on a parent boundary again, and the result is identical to a full cut.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pyfastcdc

from agent.repo.chunklist import DATA

Chunk = tuple[int, int, memoryview, "bytes | None"]  # image offset, length, bytes, id when already known
_BATCH = 64  # candidates hashed per round trip to the pool


class ParentChunks:
    """The parent's data chunks as sorted columns (44 bytes per chunk), looked up by start offset."""

    def __init__(self, groups: Sequence[np.ndarray]) -> None:
        recs = np.concatenate(groups) if groups else np.zeros(0, dtype=[("kind", "u1"), ("length", "<u8"),
                                                                         ("id", "V32")])
        lengths = recs["length"].astype(np.uint64)
        starts = np.cumsum(lengths) - lengths
        data = recs["kind"] == DATA
        # A chunk followed by zeros (or the image's end) may have been cut there only because a data
        # extent ended (a hole followed): not a cut the chunker would make where the data goes on.
        before_zero = np.ones(len(recs), dtype=bool)
        before_zero[:-1] = recs["kind"][1:] != DATA
        self.starts = starts[data]
        self.lengths = lengths[data].astype(np.int64)
        self.ids = recs["id"][data]
        self.maybe_forced = before_zero[data]

    def __len__(self) -> int:
        return len(self.starts)

    def find(self, pos: int) -> int:
        i = int(self.starts.searchsorted(np.uint64(pos)))
        return i if i < len(self.starts) and int(self.starts[i]) == pos else -1


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
        cands = []
        p = pos
        while i < len(starts) and int(starts[i]) == p and p + int(lengths[i]) <= end and len(cands) < _BATCH:
            n = int(lengths[i])
            if self.parent.maybe_forced[i] and not (extent_ends and p + n == end):
                break
            cands.append((p, n, view[p - base:p - base + n], i))
            p += n
            i += 1
        if not cands:
            return []
        out: list[Chunk] = []
        for (p, n, v, i), cid in zip(cands, self.hash_many([c[2] for c in cands])):
            if cid != self.parent.ids[i].tobytes():
                break
            out.append((p, n, v, cid))
            self.reused += n
        return out
