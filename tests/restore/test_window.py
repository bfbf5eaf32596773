"""The restore's read window: as many reads in flight as keep the cores busy over the round trip,
within the connection limit and the memory budget; fixed for a local repository; results in order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hypothesis import given
from hypothesis import strategies as st

from agent.restore.window import LOCAL, MEMORY, Window, as_done

MIB = 1 << 20


@given(st.lists(st.tuples(st.floats(0.001, 2.0), st.floats(0.0, 0.5)), min_size=1, max_size=50),
       st.integers(3, 64))
def test_window_stays_within_its_bounds(reads, connections):
    w = Window.for_backend(connections, 4 * MIB)
    for wall, cpu in reads:
        w.observe(wall, cpu)
        assert LOCAL <= w.size <= w.limit <= max(LOCAL, min(connections, MEMORY // (4 * MIB)))
    assert w.peak >= w.size


def test_long_round_trips_open_the_window_and_a_local_repository_keeps_three():
    w = Window.for_backend(16, 4 * MIB)
    for _ in range(20):
        w.observe(0.160, 0.010)  # 150 ms waiting, 10 ms decoding
    assert w.size == w.limit == 16  # the connection limit
    for _ in range(60):
        w.observe(0.012, 0.010)  # the round trip is gone: the window closes again
    assert w.size == LOCAL and w.peak == 16
    whole_packs = Window.for_backend(16, 16 * MIB)
    for _ in range(20):
        whole_packs.observe(0.300, 0.040)
    assert whole_packs.size == MEMORY // (16 * MIB) == 6  # the memory budget
    local = Window.for_backend(2, 4 * MIB)
    for _ in range(20):
        local.observe(1.0, 0.001)
    assert local.size == LOCAL
    assert Window.for_backend(16, 4 * MIB, fixed=5).size == 5


def test_as_done_runs_every_job_once_with_at_most_size_outstanding_and_no_wait_behind_a_slow_one():
    running = 0
    most = 0
    lock = threading.Lock()

    def job(k: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.3 if k == 0 else 0.01)  # the first job is slow
        with lock:
            running -= 1
        return k

    with ThreadPoolExecutor(8) as pool:
        got = [f.result() for f in as_done(pool, job, [(k,) for k in range(30)], lambda: 4)]
    assert sorted(got) == list(range(30))
    assert most <= 4
    assert got[-1] == 0  # the others went past the slow one (in order, the window would have stalled behind it)
