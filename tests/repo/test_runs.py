"""Run records (runs/<id>): the dataclass writes what version-1 records always held, and reads
them back, including records with fields it does not know."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.repo.runs import RunRecord

_T = "2024-05-01T02:00:00+00:00"

text = st.text(max_size=40)
times = st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())
sizes = st.integers(min_value=0, max_value=1 << 50)
records = st.builds(
    RunRecord, status=st.sampled_from(["incomplete", "failed"]), reason=text, host=text, source=text,
    started=times, stopped=times, source_bytes=sizes, done_bytes=sizes, new_bytes=sizes, uploaded_bytes=sizes,
    agent_version=text, packs=st.lists(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), max_size=5))


@given(records)
def test_round_trip(rec):
    assert RunRecord.from_json(rec.to_json()) == rec


@given(records)
def test_bytes_are_those_of_a_version_1_record(rec):
    """0.1.0 wrote a dict in this key order with compact separators; the bytes must not change."""
    old = {"version": 1, "status": rec.status, "reason": rec.reason, "host": rec.host, "source": rec.source,
           "started": rec.started, "stopped": rec.stopped, "source_bytes": rec.source_bytes,
           "done_bytes": rec.done_bytes, "new_bytes": rec.new_bytes, "uploaded_bytes": rec.uploaded_bytes,
           "agent_version": rec.agent_version, "packs": rec.packs}
    assert rec.to_json() == json.dumps(old, separators=(",", ":")).encode()


@given(records, st.dictionaries(st.text(min_size=1).filter(lambda k: k not in RunRecord.__dataclass_fields__),
                                st.integers(), max_size=3))
def test_fields_of_a_later_version_are_ignored(rec, extra):
    doc = {**json.loads(rec.to_json()), **extra}
    assert RunRecord.from_json(json.dumps(doc).encode()) == rec


@given(st.one_of(st.binary(max_size=64), st.just(b"[]"), st.just(b'"x"'), st.just(b'{"status": "failed"}')))
def test_anything_else_is_a_value_error(raw):
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and {"status", "reason", "host", "source", "started", "stopped"} <= doc.keys():
        return  # a valid record by chance
    with pytest.raises(ValueError):
        RunRecord.from_json(raw)


def test_summary_leaves_out_the_pack_list():
    rec = RunRecord(status="failed", reason="r", host="h", source="s", started=_T, stopped=_T, packs=["p"])
    assert "packs" not in rec.summary() and rec.summary()["reason"] == "r"


@pytest.mark.parametrize("field,value", [("packs", 5), ("packs", [1]), ("uploaded_bytes", "9"), ("host", None),
                                         ("done_bytes", True), ("started", 3)])
def test_wrong_types_are_a_value_error(field, value):
    doc = json.loads(RunRecord(status="failed", reason="r", host="h", source="s", started=_T, stopped=_T).to_json())
    doc[field] = value
    with pytest.raises(ValueError, match=field):
        RunRecord.from_json(json.dumps(doc).encode())


@pytest.mark.parametrize("when", ["a", "2024-05-01T02:00:00", ""])
def test_a_time_that_is_no_time_with_an_offset_is_a_value_error(when):
    """`snapshots --all` sorts and prints these as times: a record must not crash it."""
    doc = json.loads(RunRecord(status="failed", reason="r", host="h", source="s", started=_T, stopped=_T).to_json())
    doc["started"] = when
    with pytest.raises(ValueError):
        RunRecord.from_json(json.dumps(doc).encode())
