"""The restore's writer thread: writes in submission order, tickets that say what is on the target,
bounded memory, and a failed write raised where progress is recorded."""

from __future__ import annotations

import threading
import time

import pytest

from agent.errors import TargetError
from agent.restore.writer import Writer


def test_everything_submitted_is_written_in_order_and_tickets_follow():
    out: list[tuple[bytes, int]] = []
    w = Writer(lambda view, at: out.append((bytes(view), at)))
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

    def write(view, at):
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
    w = Writer(lambda view, at: gate.wait(5), limit=10)
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

    def write(view, at):
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
    def write(view, at):
        raise ValueError("a bug")

    w = Writer(write)
    try:
        w.submit([(memoryview(b"a"), 0)])
        with pytest.raises(ValueError, match="a bug"):
            w.drain()
    finally:
        w.close()
