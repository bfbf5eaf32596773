"""Parse `--at` / `--time` values: a date (end of that day, local time), a timestamp, or a
relative form (`now`, `today`, `yesterday`, or a duration ago as agent.config.durations reads it:
`3d`, `12h`, `90m`, `1h30m`)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from agent.config.durations import FORM, DurationTooLong, parse_duration
from agent.errors import UsageError


def _end_of_day(d: date) -> datetime:
    return datetime.combine(d, time(23, 59, 59, 999999)).astimezone()


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """An aware datetime. Naive timestamps are local time, like a sysadmin typing one expects."""
    now = now or datetime.now(UTC)
    t = text.strip().lower()
    if t == "now":
        return now
    if t == "today":
        return _end_of_day(now.astimezone().date())
    if t == "yesterday":
        return _end_of_day(now.astimezone().date() - timedelta(days=1))
    if FORM.fullmatch(t.replace(" ", "")):  # a duration ago
        try:
            return now - parse_duration(t, what="a time")
        except (OverflowError, DurationTooLong):
            raise UsageError(f"the time {text!r} is further back than any date (year 1)") from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        try:
            return _end_of_day(date.fromisoformat(t))
        except ValueError:
            pass
    else:
        try:
            dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError:
            pass
        else:
            return dt if dt.tzinfo else dt.astimezone()
    raise UsageError(
        f"cannot read the time {text!r}; use a date (2024-05-01), a timestamp (2024-05-01T13:00, "
        "2024-05-01T13:00:00Z) or a relative form (yesterday, 3d, 12h, 1h30m)"
    )


def next_clock_time(text: str, now: datetime | None = None) -> datetime:
    """The next local wall-clock `HH:MM` after `now`: a run started at 23:00 with 06:30 stops tomorrow."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m[1]) > 23 or int(m[2]) > 59:
        raise UsageError(f"cannot read the time of day {text!r}; use HH:MM, e.g. 06:30")
    now = (now or datetime.now(UTC)).astimezone()
    at = now.replace(hour=int(m[1]), minute=int(m[2]), second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def run_deadline(stop_at: str | None, max_duration: str | None, now: datetime | None = None) -> datetime | None:
    """The earlier of `--stop-at` and now + `--max-duration`, or None without either."""
    now = now or datetime.now(UTC)
    candidates = []
    if stop_at:
        candidates.append(next_clock_time(stop_at, now))
    if max_duration:
        candidates.append(now + parse_duration(max_duration, what="--max-duration"))
    return min(candidates) if candidates else None
