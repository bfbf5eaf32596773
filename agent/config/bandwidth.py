"""Bandwidth limits as a user writes them: `4MiB/s`, `20Mbit/s`, `off`, or a timetable such as
`08:00-18:00=1MiB/s,18:00-08:00=off`.

A timetable lets one nightly job be gentle during office hours and use the whole link at night
without a second configuration. This module only reads what the user wrote; the limiter that
follows the timetable is the storage's (agent.repo.storage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.config.sizes import parse_size
from agent.errors import UsageError

_BITS = {"bit": 1 / 8, "kbit": 1000 / 8, "mbit": 1000**2 / 8, "gbit": 1000**3 / 8}
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_UNLIMITED = ("off", "none", "unlimited")
_HELP = "use forms like 4MiB/s, 500KiB/s, 20Mbit/s or off"


def parse_rate(text: str) -> float | None:
    """Bytes per second, or None for unlimited. The amount is a size as agent.config.sizes reads it
    (`4MiB/s` binary, `4MB/s` decimal), or bits (`20Mbit/s`, decimal as networks count)."""
    t = text.strip().lower().replace(" ", "")
    if t in _UNLIMITED:
        return None
    amount, per_second, rest = t.partition("/s")
    if not per_second or rest or not amount:
        raise UsageError(f"cannot read the bandwidth {text!r}; {_HELP}")
    bits = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?bit)", amount)
    try:
        rate = float(bits.group(1)) * _BITS[bits.group(2)] if bits else float(parse_size(amount))
    except UsageError:
        raise UsageError(f"cannot read the bandwidth {text!r}; {_HELP}") from None
    if rate < 1024:
        raise UsageError(f"the bandwidth {text!r} is below 1 KiB/s; {_HELP}")
    return rate


def _minute(h: str, m: str, text: str) -> int:
    hh, mm = int(h), int(m)
    if hh > 24 or mm > 59 or (hh == 24 and mm):
        raise UsageError(f"{text!r} is not a time of day (HH:MM)")
    return (hh * 60 + mm) % 1440


@dataclass(frozen=True)
class RateSchedule:
    """A daily timetable: (start minute, end minute, rate) spans; times outside every span are
    unlimited. A single rate is a span covering the whole day."""

    spans: tuple[tuple[int, int, float | None], ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> RateSchedule:
        text = text.strip()
        if "=" not in text:
            return cls(((0, 1440, parse_rate(text)),), text)
        spans = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            window, _, rate = part.partition("=")
            m = _SPAN.match(window.strip())
            if not m or not rate:
                raise UsageError(f"cannot read the timetable entry {part!r}; use HH:MM-HH:MM=RATE, e.g. "
                                 "08:00-18:00=1MiB/s,18:00-08:00=off")
            start, end = _minute(m[1], m[2], part), _minute(m[3], m[4], part)
            spans.append((start, end if end != start else start + 1440, parse_rate(rate)))
        return cls(tuple(spans), text)

    def rate_at(self, minute_of_day: int) -> float | None:
        for start, end, rate in self.spans:
            if start < end and start <= minute_of_day < end:
                return rate
            if start >= end and (minute_of_day >= start or minute_of_day < end):  # crosses midnight
                return rate
            if end > 1440 and start <= minute_of_day + 1440 < end:
                return rate
        return None

    @property
    def is_unlimited(self) -> bool:
        return all(rate is None for *_, rate in self.spans)
