"""The backup's reader: read and cut two stretches of a disk at once.

Front to back, a night's new data is compressed only when the reader reaches it, often near the
end of the disk, after both cores sat half idle while the unchanged rest was read and hashed.
With two stretches the second half's new data is compressed while the first half is still read,
and the disk has two reads in flight.

The split points depend only on the source's size, so they are the same every night: the chunk
that ends at one is cut there every time (as at the end of a data extent), and the parent
snapshot's chunks still line up. The chunk list stays in image order: the records of a later
stretch wait in a temporary file (agent.repo.chunklist.DeferredRecords) until every stretch
before it is complete.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pyfastcdc

from agent.backup.blocks import Block, Hole, cut_blocks, read_blocks
from agent.backup.buffers import BufferPool
from agent.backup.guided_cut import GuidedCutter
from agent.backup.producers import Merge, ReadAhead
from agent.repo.chunklist import ChunkListWriter, DeferredRecords
from agent.source.device import Source
from agent.source.skipmap import SkipMap

READ_AHEAD = 1  # blocks read ahead of cutting, per stretch
#: each further stretch pins one more carried tail and one more block being read
BUFFERS_PER_STRETCH = 2
_ALIGN = 1 << 20

Records = ChunkListWriter | DeferredRecords


def split(size: int, count: int, minimum: int) -> list[tuple[int, int]]:
    """[lo, hi) stretches covering `size` bytes: `count` of them, at 1 MiB-aligned points, when each
    would hold at least `minimum` bytes; otherwise one."""
    n = max(1, count) if size >= minimum * max(1, count) else 1
    cuts = [0] + [(size * k // n) & ~(_ALIGN - 1) for k in range(1, n)] + [size]
    return [(lo, hi) for lo, hi in zip(cuts, cuts[1:]) if hi > lo]


class StretchReader:
    """Per stretch a reading and a cutting thread, merged into one stream of blocks and holes,
    each with where its chunk-list records go."""

    def __init__(self, src: Source, stretches: list[tuple[int, int]], pool: BufferPool, head: int,
                 cdc: pyfastcdc.FastCDC, guide: Callable[[], GuidedCutter | None], chunklist: ChunkListWriter,
                 skip: SkipMap | None = None) -> None:
        self._chunklist = chunklist
        self._raws = [ReadAhead(read_blocks(src, pool, head, lo=lo, hi=hi, skip=skip), READ_AHEAD)
                      for lo, hi in stretches]
        self._merge = Merge([cut_blocks(raw, cdc, pool, head, guide()) for raw in self._raws], len(stretches))
        self._records: list[Records] = [chunklist] + [DeferredRecords() for _ in stretches[1:]]
        self._done = [False] * len(stretches)
        self._first_open = 0  # every stretch before it is complete, its records in the chunk list

    def items(self, append_deferred: Callable[[DeferredRecords], None]) -> Iterator[tuple[Block | Hole, Records]]:
        """(block or hole, its records' destination). When the stretches before a later one are
        complete, `append_deferred` gets that one's waiting records; the rest go straight in."""
        for k, item in self._merge:
            if item is not None:
                yield item, self._records[k]
                continue
            self._done[k] = True
            while self._first_open < len(self._done) and self._done[self._first_open]:
                self._first_open += 1
                if self._first_open < len(self._records):
                    later = self._records[self._first_open]
                    assert isinstance(later, DeferredRecords)
                    append_deferred(later)
                    self._records[self._first_open] = self._chunklist

    def close(self) -> None:
        """Stop every thread (the buffer pool must be closed first) and drop waiting records."""
        self._merge.close()
        for raw in self._raws:
            raw.close()
        for records in self._records:
            if isinstance(records, DeferredRecords):
                records.close()
