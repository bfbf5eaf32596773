"""Parse `--at` / `--time` values: a date (end of that day, local time), a timestamp, or a
relative form (`now`, `today`, `yesterday`, `3d`, `12h`, `2w`, `90m`)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from agent.errors import UsageError

_REL = re.compile(r"^(\d+)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _end_of_day(d: date) -> datetime:
    return datetime.combine(d, time(23, 59, 59, 999999)).astimezone()


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """An aware datetime. Naive timestamps are local time, like a sysadmin typing one expects."""
    now = now or datetime.now(timezone.utc)
    t = text.strip().lower()
    if t == "now":
        return now
    if t == "today":
        return _end_of_day(now.astimezone().date())
    if t == "yesterday":
        return _end_of_day(now.astimezone().date() - timedelta(days=1))
    m = _REL.match(t)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
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
        "2024-05-01T13:00:00Z) or a relative form (yesterday, 3d, 12h)"
    )
