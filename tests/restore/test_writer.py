"""The restore's writer thread: writes in submission order, tickets that say what is on the target,
bounded memory, and a failed write raised where progress is recorded."""

from __future__ import annotations

import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import TargetError
from agent.restore.target import pwritev_all
from agent.restore.writer import Writer, runs


def test_everything_submitted_is_written_in_order_and_tickets_follow():
    out: list[tuple[bytes, int]] = []
    w = Writer(lambda views, at: out.append((b"".join(views), at)))
    try:
        tickets = [w.submit([(memoryview(bytes([i])), i), (memoryview(bytes([i, i])), 100 + i)]) for i in range(50)]
        assert tickets == sorted(tickets) and len(set(tickets)) == 50
        w.drain()
        assert w.done(tickets[-1]) and w.ticket() == tickets[-1]
        assert out == [pair for i in range(50) for pair in ((bytes([i]), i), (bytes([i, i]), 100 + i))]
    finally:
        w.close()


def test_a_ticket_is_done_only_once_its_writes_are():
    gate = threading.Event()
    seen: list[int] = []

    def write(views, at):
        gate.wait(5)
        seen.append(at)

    w = Writer(write)
    try:
        t = w.submit([(memoryview(b"x"), 7)])
        time.sleep(0.05)
        assert not w.done(t) and seen == []  # still queued: a journal must not record it yet
        gate.set()
        w.drain()
        assert w.done(t) and seen == [7]
    finally:
        gate.set()
        w.close()


def test_a_submit_past_the_limit_waits_for_the_writer():
    """Bytes waiting to be written stay under the limit; one batch larger than it still goes alone."""
    gate = threading.Event()
    w = Writer(lambda views, at: gate.wait(5), limit=10)
    entered = threading.Event()

    def second():
        w.submit([(memoryview(bytes(8)), 8)])
        entered.set()

    try:
        w.submit([(memoryview(bytes(30)), 0)])  # over the limit, but nothing waits: taken
        th = threading.Thread(target=second)
        th.start()
        time.sleep(0.2)
        assert not entered.is_set()  # 30 bytes still waiting: the next batch waits for room
        gate.set()
        th.join(5)
        assert entered.is_set()
        w.drain()
    finally:
        gate.set()
        w.close()


def test_a_failed_write_is_raised_where_progress_is_recorded_and_later_ones_are_skipped():
    written: list[int] = []

    def write(views, at):
        if at == 1:
            raise TargetError("writing t failed: No space left on device")
        written.append(at)

    w = Writer(write)
    try:
        w.submit([(memoryview(b"a"), 0)])
        t = w.submit([(memoryview(b"b"), 1)])
        with pytest.raises(TargetError, match="No space left"):
            w.drain()
        with pytest.raises(TargetError):
            w.done(t)
        with pytest.raises(TargetError):
            w.submit([(memoryview(b"c"), 2)])
        assert written == [0]
    finally:
        w.close()


def test_any_failure_in_the_writer_reaches_the_caller_instead_of_a_hang():
    def write(views, at):
        raise ValueError("a bug")

    w = Writer(write)
    try:
        w.submit([(memoryview(b"a"), 0)])
        with pytest.raises(ValueError, match="a bug"):
            w.drain()
    finally:
        w.close()


def test_a_batch_of_contiguous_chunks_is_one_vectored_write():
    calls: list[tuple[list[bytes], int]] = []
    w = Writer(lambda views, at: calls.append(([bytes(v) for v in views], at)))
    try:
        w.submit([(memoryview(b"ab"), 10), (memoryview(b"cd"), 12), (memoryview(b"e"), 14), (memoryview(b"z"), 40),
                  (memoryview(b"y"), 41)])
        w.drain()
        assert calls == [([b"ab", b"cd", b"e"], 10), ([b"z", b"y"], 40)]
    finally:
        w.close()


_writes = st.lists(st.tuples(st.binary(max_size=6), st.booleans(), st.integers(0, 50)), max_size=40)


@given(_writes, st.integers(1, 5))
def test_runs_write_what_the_single_writes_would(spec, max_views):
    """Each run is contiguous and in order, holds at most max_views views, and applying the runs
    leaves the same bytes as applying every write alone (later writes over earlier ones)."""
    writes, at = [], 0
    for data, follows, jump in spec:  # `follows`: starts where the previous write ended
        at = at if follows else jump
        writes.append((memoryview(data), at))
        at += len(data)
    alone, together = bytearray(200), bytearray(200)
    for view, off in writes:
        alone[off:off + len(view)] = view
    out = runs(writes, max_views)
    for views, off in out:
        assert 0 < len(views) <= max_views and all(len(v) for v in views)
        joined = b"".join(views)
        together[off:off + len(joined)] = joined
    assert together == alone
    assert [v for views, _ in out for v in views] == [v for v, _ in writes if len(v)]


@given(st.lists(st.binary(max_size=5000), max_size=12), st.integers(0, 9000))
@settings(max_examples=50, deadline=None)
def test_pwritev_all_writes_every_buffer_in_place(tmp_path_factory, pieces, offset):
    path = tmp_path_factory.mktemp("v") / "t.img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pwritev_all(fd, [memoryview(p) for p in pieces], offset, str(path))
        joined = b"".join(pieces)
        assert os.pread(fd, len(joined), offset) == joined
        assert os.fstat(fd).st_size == (offset + len(joined) if joined else 0)
    finally:
        os.close(fd)


def test_pwritev_all_names_the_target_when_the_write_fails(tmp_path):
    path = tmp_path / "t.img"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(TargetError, match=str(path)):
            pwritev_all(fd, [memoryview(b"abc")], 0, str(path))
    finally:
        os.close(fd)
