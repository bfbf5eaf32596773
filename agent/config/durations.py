"""The one reader of durations (`90m`, `1h30m`, `14d`, `6mo`, `1y6mo`) for every flag and config field.

One parser so a unit means the same everywhere: `m` is minutes (it once meant months in retention
flags), months are `mo`. Months and years are fixed spans (30 and 365 days): durations here are
windows and timeouts, never calendar arithmetic. The table is in docs/configuration.md.
"""

from __future__ import annotations

import re
from datetime import timedelta

from agent.errors import UsageError

# longest names first, so `mo` and `min` are not read as `m` followed by garbage
SECONDS = {"y": 365 * 86400, "mo": 30 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "min": 60, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)(y|mo|w|d|h|min|m|s)")
FORM = re.compile(r"(?:\d+(?:y|mo|w|d|h|min|m|s))+")  # the shape, before the order of units is checked
_ORDER = {u: i for i, u in enumerate(("y", "mo", "w", "d", "h", "m", "s"))}
EXAMPLES = "90m, 1h30m, 36h, 14d, 2w, 6mo, 1y"
UNITS_HELP = "Units: docs/configuration.md#durations-and-sizes."  # appended to flag help texts


class DurationTooLong(UsageError):
    """Beyond what a timedelta holds (about 2.7 million years)."""


def parse_duration(text: str, *, what: str = "", at_least: timedelta | None = None) -> timedelta:
    """A timedelta from `<number><unit>` parts, largest unit first (`1d12h`); UsageError otherwise.

    `at_least` catches values that are surely a mistake, such as a retention window of six
    minutes written `6m` by someone who meant six months. `what` names the flag or field in errors."""
    of = f" for {what}" if what else ""
    t = "".join(text.split()).lower()
    pos, total, last = 0, 0, -1
    for m in _PART.finditer(t):
        unit = "m" if m.group(2) == "min" else m.group(2)
        if m.start() != pos or _ORDER[unit] <= last:
            break
        total += int(m.group(1)) * SECONDS[unit]
        pos, last = m.end(), _ORDER[unit]
    if not t or pos != len(t):
        hint = " (a unit is required)" if t.isdigit() else ""
        raise UsageError(f"cannot read the duration {text!r}{of}{hint}; use forms like {EXAMPLES} "
                         "(m is minutes, mo months)")
    try:
        value = timedelta(seconds=total)
    except OverflowError:
        raise DurationTooLong(f"the duration {text!r}{of} is too long") from None
    if at_least is not None and value < at_least:
        months = re.fullmatch(r"(\d+)m(in)?", t)
        suggest = f"; for months write {months.group(1)}mo" if months else ""
        raise UsageError(f"the duration {text!r}{of} is shorter than {format_duration(at_least)}, surely a "
                         f"mistake{suggest} (m is minutes)")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest form parse_duration reads back to the same whole seconds, in days at most
    (`36h`, `14d`, `1d12h`), as months and years are approximations."""
    s = int(value.total_seconds())
    if s <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        n, s = divmod(s, SECONDS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)
