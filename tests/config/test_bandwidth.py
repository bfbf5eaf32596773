"""Bandwidth limits: the forms a user writes, timetables, and the measured rate of a real upload."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.bandwidth import RateSchedule, parse_rate
from agent.errors import UsageError
from agent.repo.storage import ScheduledLimiter, limiter_for

MiB = 1 << 20


@pytest.mark.parametrize("text, rate", [
    ("4MiB/s", 4 * MiB), ("500KiB/s", 500 * 1024), ("20Mbit/s", 2_500_000), ("1.5 MB/s", 1_500_000),
    ("1GiB/s", 1 << 30), ("8000kbit/s", 1_000_000), ("off", None), ("unlimited", None),
])
def test_rates_in_the_units_admins_use(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["4", "4MB", "fast", "4 parsecs/s", "100b/s", ""])
def test_unreadable_rates_say_which_forms_work(text):
    with pytest.raises(UsageError, match="4MiB/s"):
        parse_rate(text)


def test_timetable_picks_the_span_of_the_minute_including_across_midnight():
    t = RateSchedule.parse("08:00-18:00=1MiB/s,18:00-08:00=off")
    assert t.rate_at(8 * 60) == MiB and t.rate_at(17 * 60 + 59) == MiB
    assert t.rate_at(18 * 60) is None and t.rate_at(2 * 60) is None and t.rate_at(7 * 60 + 59) is None
    gap = RateSchedule.parse("22:00-06:00=10MiB/s")
    assert gap.rate_at(23 * 60) == 10 * MiB and gap.rate_at(5 * 60) == 10 * MiB and gap.rate_at(12 * 60) is None


@given(st.integers(0, 23), st.integers(0, 23), st.integers(0, 1439))
def test_two_complementary_spans_cover_every_minute(a, b, minute):
    if a == b:
        return
    t = RateSchedule.parse(f"{a:02d}:00-{b:02d}:00=1MiB/s,{b:02d}:00-{a:02d}:00=2MiB/s")
    inside = (a * 60 <= minute < b * 60) if a < b else (minute >= a * 60 or minute < b * 60)
    assert t.rate_at(minute) == (MiB if inside else 2 * MiB)


@pytest.mark.parametrize("text", ["08:00-25:00=1MiB/s", "8-18=1MiB/s", "08:00-18:00", "08:00-18:00=quick"])
def test_bad_timetables_are_refused(text):
    with pytest.raises(UsageError):
        RateSchedule.parse(text)


def test_scheduled_limiter_follows_the_clock():
    clock = {"now": datetime(2024, 5, 1, 7, 59)}
    lim = ScheduledLimiter(RateSchedule.parse("08:00-18:00=1MiB/s"), now=lambda: clock["now"])
    assert lim.rate is None
    clock["now"] = datetime(2024, 5, 1, 8, 0)
    lim._checked -= ScheduledLimiter.RECHECK_S  # as if the recheck interval had passed
    lim.consume(1)
    assert lim.rate == MiB
    assert limiter_for("off") is None and limiter_for("18:00-08:00=off") is None
    assert limiter_for("2MiB/s").rate == 2 * MiB


def test_upload_limit_holds_over_a_30_second_backup_to_s3(tmp_path, cli, moto_endpoint):
    """The acceptance figure: 60 MiB of incompressible data at --limit-upload 2MiB/s over loopback."""
    boto3 = pytest.importorskip("boto3")
    bucket = f"bw-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    env = {"AGENT_REPO": f"s3://{bucket}/repo?endpoint={moto_endpoint}&region=us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    img = tmp_path / "random.img"
    img.write_bytes(os.urandom(60 * MiB))
    cli("init", "--pack-size", "4", env=env)
    t0 = time.monotonic()
    res = cli("backup", str(img), "--limit-upload", "2MiB/s", "--json", env=env, timeout=120).json()
    wall = time.monotonic() - t0
    rate = res["uploaded_bytes"] / res["duration_s"] / MiB
    print(f"upload limit 2 MiB/s: {res['uploaded_bytes'] / MiB:.1f} MiB in {res['duration_s']:.1f} s "
          f"= {rate:.3f} MiB/s (process wall {wall:.1f} s)")
    assert res["uploaded_bytes"] >= 60 * MiB
    assert 1.8 <= rate <= 2.2, rate  # within 10% of the limit
