"""Retention policy: which snapshots `forget` keeps, and the rule that kept each.

Semantics (docs/retention.md): snapshots are grouped (by host and source by default) and, within a
group, walked newest first. A bucket rule (`last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`)
keeps a snapshot when its calendar bucket in local time differs from the bucket of the previous
snapshot that rule kept, until the rule has kept N. `within D` keeps everything taken within D of
the group's newest snapshot; `within_daily D` etc. keep one per bucket inside that window; `tags`
keeps snapshots carrying any of the tags. A snapshot is kept if any rule keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from agent.config.durations import format_duration, parse_duration
from agent.repo.snapshots import Snapshot

_BUCKETS: dict[str, Callable[[datetime], tuple]] = {
    "last": lambda t: (t.timestamp(),),
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}
WINDOW_AT_LEAST = timedelta(hours=1)


def parse_window(text: str, what: str = "") -> timedelta:
    """A retention or staleness window (`14d`, `2w`, `6mo`, `1y6mo`, `36h`), at least an hour long:
    before there was one duration parser `6m` meant six months here, so a shorter window is refused
    with a hint to write `6mo` instead of silently meaning six minutes."""
    return parse_duration(text, what=what, at_least=WINDOW_AT_LEAST)


@dataclass
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None
    within_hourly: timedelta | None = None
    within_daily: timedelta | None = None
    within_weekly: timedelta | None = None
    within_monthly: timedelta | None = None
    within_yearly: timedelta | None = None
    tags: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any([self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly, self.within,
                        self.within_hourly, self.within_daily, self.within_weekly, self.within_monthly,
                        self.within_yearly, self.tags])

    def describe(self) -> str:
        parts = [f"keep-{k} {v}" for k, v in vars(self).items() if v and k != "tags" and not isinstance(v, timedelta)]
        parts += [f"keep-{k.replace('_', '-')} {_span(v)}" for k, v in vars(self).items() if isinstance(v, timedelta)]
        parts += [f"keep-tag {t}" for t in self.tags]
        return ", ".join(parts) or "(none)"


@dataclass
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: list[str]


def group_key(s: Snapshot, group_by: tuple[str, ...]) -> tuple:
    parts = {"host": s.host, "source": s.source_path, "tags": ",".join(sorted(s.tags))}
    return tuple(parts[g] for g in group_by)


def apply(snaps: list[Snapshot], policy: Policy) -> list[Decision]:
    """Decisions for one group, newest first."""
    ordered = sorted(snaps, key=lambda s: s.time, reverse=True)
    if not ordered:
        return []
    newest = ordered[0].time
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    for rule, bucket in _BUCKETS.items():
        count = getattr(policy, rule)
        window = getattr(policy, f"within_{rule}", None) if rule != "last" else None
        last_bucket = None
        kept = 0
        for s in ordered:
            local = s.time.astimezone()
            b = bucket(local)
            if b == last_bucket:
                continue
            if count and kept < count:
                reasons[s.id].append(f"{rule} {b_label(rule, local)}".strip())
                kept += 1
                last_bucket = b
            elif window is not None and newest - s.time <= window:
                reasons[s.id].append(f"within-{rule} {b_label(rule, local)}")
                last_bucket = b
    for s in ordered:
        if policy.within is not None and newest - s.time <= policy.within:
            reasons[s.id].append("within")
        matched = sorted(set(policy.tags) & set(s.tags))
        if matched:
            reasons[s.id].append("tag " + ",".join(matched))
    return [Decision(s, bool(reasons[s.id]), reasons[s.id]) for s in ordered]


def _span(d: timedelta) -> str:
    """`2d`, `1d12h`: the form --keep-within takes, not timedelta's `2 days, 0:00:00`."""
    return format_duration(d)


def b_label(rule: str, t: datetime) -> str:
    return {
        "last": "", "hourly": t.strftime("%Y-%m-%d %H:00"), "daily": t.strftime("%Y-%m-%d"),
        "weekly": "%d-W%02d" % tuple(t.isocalendar()[:2]), "monthly": t.strftime("%Y-%m"), "yearly": t.strftime("%Y"),
    }[rule].strip()
