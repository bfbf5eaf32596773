"""The one timestamp format of all output: RFC 3339 in UTC with a `Z` (`2026-12-07T14:03:22Z`).

Human output shows whole seconds. JSON keeps the sub-second part when the value has one, so a
snapshot's time read from `--json` and given back to `restore --at` still selects that snapshot."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(when: datetime | str | None, *, fraction: bool = False) -> str | None:
    """`when` (aware or naive UTC datetime, or any ISO 8601 text) as RFC 3339 UTC; None stays None."""
    if when is None:
        return None
    t = datetime.fromisoformat(when.replace("Z", "+00:00")) if isinstance(when, str) else when
    t = (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    if not fraction or not t.microsecond:
        t = t.replace(microsecond=0)
    return t.isoformat().replace("+00:00", "Z")


def human(when: datetime | str | None) -> str:
    """For tables and messages: whole seconds, `-` for none."""
    return rfc3339(when) or "-"
