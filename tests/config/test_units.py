"""The one duration parser and the one size parser: same units everywhere, round trips, clear refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.bandwidth import parse_rate
from agent.config.durations import format_duration, parse_duration
from agent.config.sizes import format_size, parse_size
from agent.config.times import parse_instant, run_deadline
from agent.errors import UsageError
from agent.nightly.schedule import parse_delay


@pytest.mark.parametrize("text, expected", [
    ("90m", timedelta(minutes=90)), ("90min", timedelta(minutes=90)), ("1h30m", timedelta(minutes=90)),
    ("1d12h", timedelta(hours=36)), ("36h", timedelta(hours=36)), ("2w", timedelta(days=14)),
    ("6mo", timedelta(days=180)), ("1y", timedelta(days=365)), ("1y6mo", timedelta(days=545)),
    ("45s", timedelta(seconds=45)), ("1d", timedelta(days=1)), ("1H 30M", timedelta(minutes=90)),
])
def test_durations_in_one_set_of_units(text, expected):
    assert parse_duration(text) == expected


def test_every_duration_flag_reads_90m_as_minutes():
    """--max-duration, --at/--time, the schedule's delay and the retention windows agree on units."""
    from datetime import UTC, datetime

    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert run_deadline(None, "90m", now) == now + timedelta(minutes=90)
    assert run_deadline(None, "1d", now) == now + timedelta(days=1)
    assert parse_instant("90m", now) == now - timedelta(minutes=90)
    assert parse_instant("1h30m", now) == now - timedelta(minutes=90)
    assert parse_instant("6mo", now) == now - timedelta(days=180)
    assert parse_delay("90m") == 90 * 60


@pytest.mark.parametrize("bad", ["", "90", "m", "1.5h", "1m1h", "1h1h", "-1d", "6 months", "1d garbage", "h1"])
def test_unreadable_durations_say_which_forms_work(bad):
    with pytest.raises(UsageError, match=r"use forms like 90m, 1h30m") as err:
        parse_duration(bad)
    assert "\n" not in str(err.value)


@given(st.integers(0, 10**9))
def test_duration_round_trip(seconds):
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@given(st.text(max_size=12))
def test_durations_are_read_or_refused_with_a_usage_error(text):
    try:
        value = parse_duration(text)
    except UsageError as exc:
        assert "duration" in str(exc)
    else:
        assert value >= timedelta(0)


@pytest.mark.parametrize("text, expected", [
    ("512", 512), ("4k", 4096), ("4K", 4096), ("4KiB", 4096), ("16MiB", 16 << 20), ("16M", 16 << 20),
    ("1.5G", 3 << 29), ("2GiB", 2 << 30), ("1T", 1 << 40), ("4GB", 4 * 10**9), ("500MB", 500 * 10**6),
    ("128 MiB", 128 << 20), ("10B", 10),
])
def test_sizes_binary_by_default_decimal_with_si_names(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "4 parsecs", "-1G", "1e9", "inf", "nan", "1..5G", "G"])
def test_unreadable_sizes_say_which_forms_work(bad):
    with pytest.raises(UsageError, match="use forms like 512, 4k, 16MiB"):
        parse_size(bad)


@given(st.integers(0, 1 << 62))
def test_size_round_trip(n):
    assert parse_size(format_size(n)) == n


@given(st.text(max_size=10))
def test_sizes_are_read_or_refused_with_a_usage_error(text):
    try:
        value = parse_size(text)
    except UsageError as exc:
        assert "size" in str(exc)
    else:
        assert value >= 0


def test_bandwidth_uses_the_same_size_units():
    assert parse_rate("4M/s") == parse_rate("4MiB/s") == 4 << 20
    assert parse_rate("4MB/s") == 4 * 10**6
    assert parse_rate("1.5G/s") == 3 << 29
