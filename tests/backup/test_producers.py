"""Producers in threads (agent.backup.producers): order per producer, end markers, errors, and stopping."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.backup.producers import Merge, ReadAhead


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=4), depth=st.integers(1, 3))
def test_merge_delivers_every_item_in_producer_order_then_one_end_marker(lengths, depth):
    seen: dict[int, list] = {k: [] for k in range(len(lengths))}
    ended = []
    for k, item in Merge([iter(range(n)) for n in lengths], depth):
        if item is None:
            assert k not in ended
            ended.append(k)
        else:
            assert k not in ended  # nothing after a producer's end marker
            seen[k].append(item)
    assert sorted(ended) == list(range(len(lengths)))
    assert seen == {k: list(range(n)) for k, n in enumerate(lengths)}


def test_producer_error_is_raised_in_the_consumer():
    def failing():
        yield 1
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        list(ReadAhead(failing(), 1))


def test_close_stops_producers_that_are_waiting_on_a_full_queue():
    produced = []

    def endless(k):
        i = 0
        while True:
            produced.append((k, i))
            yield i
            i += 1

    merge = Merge([endless(0), endless(1)], 1)
    first = next(iter(merge))
    assert first[1] == 0
    merge.close()
    count = len(produced)
    assert not any(t.name == "read" and t.is_alive() for t in threading.enumerate() if t in merge._threads)
    assert len(produced) == count  # nothing runs after close
