"""The read-buffer pool must never hand out a buffer that a chunk view still points into."""

import gc

import numpy as np

from agent.buffers import BufferPool


def test_buffer_returns_only_after_the_last_view_of_any_kind_dies():
    pool = BufferPool(1 << 20, keep=4)
    backing = pool.take()
    backing[:] = 7
    lent = pool.lend(backing, 100, 200)
    np_slice = lent[10:20]  # numpy slices of the lent array: they must keep it alive
    mv_slice = memoryview(lent)[30:40]
    del backing, lent
    gc.collect()
    assert pool._free == []
    del np_slice
    gc.collect()
    assert pool._free == []  # the memoryview still points into it
    assert bytes(mv_slice) == b"\x07" * 10
    del mv_slice
    gc.collect()
    assert len(pool._free) == 1
    again = pool.take()
    assert pool.allocated == 1 and again.size == 1 << 20  # recycled, not a new allocation


def test_pool_allocates_rather_than_waits_and_keeps_at_most_keep():
    pool = BufferPool(4096, keep=2)
    views = [pool.lend(pool.take(), 0, 10) for _ in range(5)]
    assert pool.allocated == 5
    del views
    gc.collect()
    assert len(pool._free) == 2
