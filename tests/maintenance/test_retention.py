"""Retention semantics with fixed timestamps, checked against hand-computed tables."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from agent.errors import UsageError
from agent.maintenance.forget import plan_forget
from agent.maintenance.retention import Policy, parse_window
from agent.repo.snapshots import Snapshot


def _snap(when: datetime, host="srv1", source="/dev/sda", tags=()) -> Snapshot:
    when = when.astimezone()  # naive = local time, as calendar buckets are
    return Snapshot(time=when, host=host, source={"path": source}, size=1, digest="", chunk_list=[],
                    tags=list(tags), id=when.strftime("%Y%m%d%H%M") + host)


def _nightly(days: int, start=datetime(2024, 1, 1, 1, 0)) -> list[Snapshot]:
    return [_snap(start + timedelta(days=i)) for i in range(days)]


def _kept_days(result) -> list[str]:
    return sorted(s.time.astimezone().strftime("%m-%d") for s in result.keep)


def test_sixty_nights_daily_weekly_monthly():
    snaps = _nightly(60)  # 2024-01-01 .. 2024-02-29 (a Thursday)
    res = plan_forget(snaps, Policy(daily=7, weekly=4, monthly=12))
    # daily: Feb 23-29; weekly (ISO): W09 Feb 29, W08 Feb 25, W07 Feb 18, W06 Feb 11; monthly: Feb 29, Jan 31
    assert _kept_days(res) == ["01-31", "02-11", "02-18", "02-23", "02-24", "02-25", "02-26", "02-27", "02-28",
                               "02-29"]
    assert len(res.remove) == 50
    reasons = {s.snapshot.time.strftime("%m-%d"): s.reasons for ds in res.groups.values() for s in ds}
    assert reasons["01-31"] == ["monthly 2024-01"]
    assert reasons["02-25"] == ["daily 2024-02-25", "weekly 2024-W08"]
    assert reasons["02-29"] == ["daily 2024-02-29", "weekly 2024-W09", "monthly 2024-02"]


def test_keep_last_and_several_per_day():
    snaps = [_snap(datetime(2024, 3, 1, h)) for h in (1, 9, 17)] + [_snap(datetime(2024, 3, 2, h)) for h in (1, 9)]
    res = plan_forget(snaps, Policy(last=2, daily=2))
    kept = sorted(s.time.astimezone().strftime("%d %H") for s in res.keep)
    assert kept == ["01 17", "02 01", "02 09"]  # last 2 + newest of each of 2 days


def test_keep_within_is_relative_to_newest_snapshot():
    snaps = _nightly(30)
    res = plan_forget(snaps, Policy(within=parse_window("5d")))
    assert _kept_days(res) == ["01-25", "01-26", "01-27", "01-28", "01-29", "01-30"]


def test_keep_within_daily_and_tags():
    snaps = [_snap(datetime(2024, 5, d, h)) for d in range(1, 11) for h in (2, 14)]
    snaps.append(_snap(datetime(2024, 4, 1, 3), tags=["before-upgrade"]))
    res = plan_forget(snaps, Policy(within_daily=parse_window("3d"), tags=["before-upgrade"]))
    kept = sorted(s.time.astimezone().strftime("%m-%d %H") for s in res.keep)
    assert kept == ["04-01 03", "05-07 14", "05-08 14", "05-09 14", "05-10 14"]


def test_groups_are_independent_and_empty_result_refused():
    a = [_snap(datetime(2024, 1, d, 1), host="a") for d in range(1, 6)]
    b = [_snap(datetime(2023, 1, d, 1), host="b") for d in range(1, 6)]
    res = plan_forget(a + b, Policy(last=1))
    assert sorted((s.host, s.time.day) for s in res.keep) == [("a", 5), ("b", 5)]
    with pytest.raises(UsageError, match="every snapshot"):
        plan_forget(a, Policy(tags=["nope"]))
    assert len(plan_forget(a, Policy(tags=["nope"]), allow_empty=True).remove) == 5


def test_no_policy_is_refused():
    with pytest.raises(UsageError, match="no retention policy"):
        plan_forget(_nightly(3), Policy())


@pytest.mark.parametrize("text,days", [("14d", 14), ("2w", 14), ("1y", 365), ("6mo", 180), ("1y2mo", 425)])
def test_durations(text, days):
    assert parse_window(text) == timedelta(days=days)


@pytest.mark.parametrize("old", ["6m", "18m", "30min"])
def test_windows_below_an_hour_are_refused_with_the_months_form(old):
    """`6m` meant six months in retention before m became minutes everywhere: never six minutes silently."""
    with pytest.raises(UsageError, match="shorter than 1h") as err:
        parse_window(old)
    if old.endswith("m"):
        assert f"write {old[:-1]}mo" in str(err.value)


@pytest.mark.parametrize("bad", ["", "5", "d", "3x", "-1d"])
def test_bad_durations(bad):
    with pytest.raises(UsageError):
        parse_window(bad)
