"""Content-defined chunking of a source with keyed FastCDC.

Reads each data extent in large blocks into recycled buffers (agent.backup.buffers; one copy of at most
one chunk per block for the carry-over) and cuts them with pyfastcdc, whose
inner loop runs without the GIL. The gear table is XORed with a secret seed from the master key
(agent.repo.repository.Repository.new_chunker),
so cut points do not reveal content to anyone without the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

import pyfastcdc

from agent.backup.buffers import BufferPool
from agent.errors import SourceError
from agent.source.device import Source
from agent.source.skipmap import SkipMap

if TYPE_CHECKING:
    from mmap import mmap

    from agent.backup.guided_cut import GuidedCutter

BLOCK_SIZE = 2 << 20  # 3 MiB blocks were 0.2 s faster on day2 but held 5 MB more at every step
# Room before each block for the previous block's uncut tail (its last chunk, forced by the buffer's
# end). Tails are chunk-sized; the rare one longer than this is joined in a fresh array instead.
HEAD_ROOM = 1 << 20


@dataclass
class Block:
    """Final chunks of one read: (offset in image, length, view into `buf`, id if already known)."""

    offset: int
    buf: memoryview | bytes
    chunks: list[tuple[int, int, memoryview, bytes | None]]


_ZEROS = bytes(256 << 10)  # compared against, never written


def is_zero(view: memoryview) -> bool:
    """All bytes zero? memcmp against a constant (bytes.startswith), 256 KiB at a time."""
    step = len(_ZEROS)
    return all(_ZEROS.startswith(view[i:i + step]) for i in range(0, len(view), step))


@dataclass(frozen=True)
class Hole:
    offset: int
    length: int


def read_blocks(src: Source, pool: BufferPool, head: int, block_size: int = BLOCK_SIZE, lo: int = 0,
                hi: int | None = None, skip: SkipMap | None = None) -> Iterator[Hole | tuple[int, mmap, int, bool]]:
    """Raw reads of the data extents in [lo, hi) as (offset, pool buffer, length, last of its
    extent), and the holes between. Data lands `head` bytes into the buffer, leaving room for the
    previous block's uncut tail, so cutting never concatenates. `hi` ends an extent (a cut is forced
    there), which is what lets two stretches of one disk be read and cut at once.

    Ranges in `skip` (free space, left-out partitions: agent.source.reading) read as zeros: long
    ones are holes, short ones are zeroed in the buffer.

    Separate from cutting so the two can run in different threads: the disk keeps reading while
    the previous block is cut (agent.backup.producers).
    """
    hi = src.size if hi is None else hi
    pos = lo
    skip = skip or SkipMap()
    for start, end in skip.extents(src.data_extents()):
        start, end = max(start, lo), min(end, hi)
        if start >= end:
            if start >= hi:
                break
            continue
        if start > pos:
            yield Hole(pos, start - pos)
        off = start
        while off < end:
            n = min(block_size, end - off)
            backing = pool.take()
            view = memoryview(backing)[head:head + n]
            got = 0
            while got < n:
                r = src.read_into(view[got:], off + got)
                if r == 0:
                    raise SourceError(f"{src.path} ended at byte {off + got} while {src.size} were expected: it "
                                      "shrank or vanished during the backup; no snapshot was written")
                got += r
            if skip:
                skip.mask(view, off)
            off += n
            yield off - n, backing, n, off >= end
        pos = end
    if pos < hi:
        yield Hole(pos, hi - pos)


def cut_blocks(reads: Iterable[Hole | tuple[int, mmap, int, bool]], cdc: pyfastcdc.FastCDC, pool: BufferPool,
               head: int, guide: GuidedCutter | None = None) -> Iterator[Block | Hole]:
    """Cut raw reads into chunks. A block's last cut is forced by the buffer's end unless its extent
    ends there, so it is carried over (copied into the next buffer's head room) and cut again with
    the next block. With a `guide`, the parent snapshot's chunks are reused where the bytes are
    unchanged (agent.backup.guided_cut)."""
    carry: memoryview | None = None
    base = 0  # image offset of buf[0]
    for item in reads:
        if isinstance(item, Hole):
            yield item
            continue
        off, backing, n, last = item
        buf: memoryview | bytes
        if carry is None:
            buf, base = pool.lend(backing, head, head + n), off
        elif len(carry) <= head:
            start = head - len(carry)
            backing[start:head] = carry
            buf = pool.lend(backing, start, head + n)
        else:  # a carry longer than the head room (rare: see HEAD_ROOM): join in a fresh array
            buf = carry.tobytes() + memoryview(backing)[head:head + n]
            pool.give_back(backing)
        del backing
        carry = None
        if guide is not None:
            chunks = guide.cut(memoryview(buf), base, base + len(buf), last)
        else:
            chunks = [(base + c.offset, c.length, c.data, None) for c in cdc.cut_buf(memoryview(buf))]
        if last:
            yield Block(base, buf, chunks)
        else:
            last_at = chunks.pop()[0]
            carry = memoryview(buf)[last_at - base:]
            yield Block(base, buf, chunks)
            base = last_at
