"""The read-buffer pool must never hand out a buffer that a chunk view still points into."""

import gc
import threading

from agent.backup.buffers import BufferPool


def test_buffer_returns_only_after_the_last_view_of_any_kind_dies():
    pool = BufferPool(1 << 20, limit=4)
    backing = pool.take()
    backing[:] = b"\x07" * len(backing)
    lent = pool.lend(backing, 100, 200)
    slice_ = lent[10:20]  # slices of the lent view: they must keep it alive
    mv_slice = memoryview(slice_)[5:10]  # and views of those slices
    del backing, lent
    gc.collect()
    assert pool._free == []
    del slice_
    gc.collect()
    assert pool._free == []  # the memoryview still points into it
    assert bytes(mv_slice) == b"\x07" * 5
    del mv_slice
    gc.collect()
    assert len(pool._free) == 1
    again = pool.take()
    assert pool.allocated == 1 and len(again) == 1 << 20  # recycled, not a new allocation


def test_take_waits_at_the_limit_until_a_view_dies_and_close_releases_waiters():
    pool = BufferPool(4096, limit=2)
    views = [pool.lend(pool.take(), 0, 10) for _ in range(2)]
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(pool.take()))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and got == []  # both buffers are lent: it waits
    del views[0]
    gc.collect()
    waiter.join(5)
    assert not waiter.is_alive() and len(got) == 1 and pool.allocated == 2  # the freed one, reused
    late: list = []
    blocked = threading.Thread(target=lambda: late.append(pool.take()))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()
    pool.close()  # a stopping pipeline: the waiting reader allocates instead of hanging
    blocked.join(5)
    assert not blocked.is_alive() and pool.allocated == 3


def test_a_buffer_given_back_directly_is_reused():
    pool = BufferPool(4096, limit=1)
    first = pool.take()
    pool.give_back(first)
    assert pool.take() is first and pool.allocated == 1
