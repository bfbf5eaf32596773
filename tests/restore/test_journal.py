"""The restore journal's format: which recorded ranges count on resume (a property test against a
model), torn tails, and a damaged header."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import TargetError
from agent.restore.journal import Header, boot_id, covered, load

HEAD = {"journal": 1, "snapshot": "ab" * 32, "window": [0, 1 << 30], "size": 1 << 30, "object": ""}

units = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 1 << 16)), min_size=1, max_size=3)
runs = st.lists(st.tuples(st.booleans(), st.lists(st.one_of(units, st.just("flush")), max_size=8)), min_size=1,
                max_size=4)


def _write(path: Path, lines: list[dict], torn: bytes = b"") -> None:
    path.write_bytes(b"".join(json.dumps(doc).encode() + b"\n" for doc in lines) + torn)


@settings(max_examples=150, deadline=None)
@given(runs=runs, torn=st.sampled_from([b"", b'{"w":[[1,', b"\xff\xfe"]))
def test_only_flushed_units_count_unless_the_same_boot_and_attachment(tmp_path_factory, runs, torn):
    path = tmp_path_factory.mktemp("j") / "journal"
    lines: list[dict] = [HEAD]
    expected: set[tuple[int, int]] = set()
    for same_session, events in runs:
        lines.append({"run": 1, "boot": boot_id() if same_session else "another-boot", "attached": "file:1:2"})
        written: list[list[tuple[int, int]]] = []
        flushed = 0
        for ev in events:
            if ev == "flush":
                flushed = len(written)
                lines.append({"f": flushed})
            else:
                written.append(ev)
                lines.append({"w": [list(r) for r in ev]})
        for unit in written if same_session else written[:flushed]:
            expected.update(unit)
    _write(path, lines, torn)
    rec = load(path, "file:1:2")
    assert rec is not None and rec.header.matches(Header("ab" * 32, (0, 1 << 30), 1 << 30))
    for off, n in expected:
        assert covered(rec.done, off, n)
    # nothing else: every done byte belongs to a counted unit
    total = sum(n for _, n in rec.done)
    assert total <= sum(n for _, n in expected)


def test_another_attachment_of_the_disk_keeps_only_flushed_units(tmp_path):
    path = tmp_path / "journal"
    _write(path, [HEAD, {"run": 1, "boot": boot_id(), "attached": "blk:7:0:41"},
                  {"w": [[0, 100]]}, {"f": 1}, {"w": [[100, 100]]}])
    assert load(path, "blk:7:0:41").done == [(0, 200)]
    assert load(path, "blk:7:0:42").done == [(0, 100)]  # re-attached: the page cache is gone


def test_a_damaged_header_is_one_clear_error(tmp_path):
    path = tmp_path / "journal"
    path.write_bytes(b"\x00garbage\n")
    with pytest.raises(TargetError, match="damaged"):
        load(path, "file:1:2")


def test_no_journal_is_none(tmp_path):
    assert load(tmp_path / "missing", "file:1:2") is None
