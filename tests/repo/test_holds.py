"""Retention records: what `agent retain` extended, read back; an overwritten object's entry no longer counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.repo.holds import HoldRecord, held_until

UPLOADED = datetime(2025, 1, 1, tzinfo=UTC)
PERIOD = timedelta(days=30)


def test_a_record_round_trips_grouped_by_generation():
    first, second = UPLOADED + timedelta(days=40), UPLOADED + timedelta(days=63)
    rec = HoldRecord(objects={"data/ab/ab1": (first, "e1"), "config": (second, "e2"), "keys/k": (first, "e3")},
                     time=UPLOADED.isoformat())
    assert list(rec.generations().items()) == [(first, ["data/ab/ab1", "keys/k"]), (second, ["config"])]
    back = HoldRecord.from_json(rec.to_json())
    assert back.objects == rec.objects and back.time == rec.time


@pytest.mark.parametrize("raw", [b"[]", b'{"version": 2, "generations": []}', b'{"version": 1}',
                                 b'{"version": 1, "generations": [{"until": "2025-01-01", "objects": {}}]}',
                                 b'{"version": 1, "generations": [{"until": "2025-01-01T00:00:00+00:00", '
                                 b'"objects": {"config": 3}}]}'])
def test_anything_else_is_refused(raw):
    with pytest.raises(ValueError):
        HoldRecord.from_json(raw)


def test_held_until_is_the_extension_while_the_etag_matches_else_the_upload_plus_the_period():
    extended = UPLOADED + timedelta(days=50)
    rec = HoldRecord(objects={"data/ab/ab1": (extended, "e1")})
    assert held_until("data/ab/ab1", UPLOADED, "e1", PERIOD, rec) == extended
    assert held_until("data/ab/ab1", UPLOADED + timedelta(days=45), "e2", PERIOD, rec) == \
        UPLOADED + timedelta(days=75)  # overwritten: the new version holds only its own default
    assert held_until("data/cd/cd1", UPLOADED, "e9", PERIOD, rec) == UPLOADED + PERIOD
    assert held_until("data/cd/cd1", None, None, PERIOD, rec) is None  # unknown: due
