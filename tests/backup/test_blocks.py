"""Cutting a disk block by block must give exactly the chunks of cutting it in one piece.

Blocks end at arbitrary places, so each block's last cut is carried into the next one: into the
buffer's head room, or, when the tail is longer than the room, into a fresh joined array. Both
paths, and a pool small enough to make the reader wait, are exercised here.
"""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.backup.blocks import Block, cut_blocks, read_blocks
from agent.backup.buffers import BufferPool
from agent.repo.chunker import make_chunker
from agent.repo.format import ChunkerParams
from agent.source.device import open_source

PARAMS = ChunkerParams(min_size=64, avg_size=512, max_size=2048)


def _blockwise(path: str, block: int, head: int, seed: int) -> list[tuple[int, bytes]]:
    cdc = make_chunker(PARAMS, seed)
    pool = BufferPool(head + block, limit=3)
    out = []
    with open_source(path) as src:
        for item in cut_blocks(read_blocks(src, pool, head, block), cdc, pool, head):
            assert isinstance(item, Block)
            out.extend((off, bytes(view)) for off, length, view, _ in item.chunks)
            del item  # the pool holds three buffers: a kept block would stall the reader
    return out


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 60_000), block=st.integers(2048, 9000), head=st.sampled_from([64, 600, 2048]),
       seed=st.integers(1, 2**63 - 1), rnd=st.randoms(use_true_random=False))
def test_blockwise_cutting_equals_one_piece(tmp_path_factory, size, block, head, seed, rnd: random.Random):
    data = bytes(rnd.getrandbits(8) for _ in range(size))
    path = tmp_path_factory.mktemp("cut") / "disk.img"
    path.write_bytes(data)
    whole = [(c.offset, bytes(c.data)) for c in make_chunker(PARAMS, seed).cut_buf(data)]
    assert _blockwise(str(path), block, head, seed) == whole
    assert b"".join(chunk for _, chunk in whole) == data


def test_long_tails_take_the_join_path_and_the_pool_stays_bounded(tmp_path):
    data = os.urandom(200_000)
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    whole = [(c.offset, bytes(c.data)) for c in make_chunker(PARAMS, 7).cut_buf(data)]
    assert _blockwise(str(path), 4096, 64, 7) == whole  # most tails exceed 64 bytes of head room
