"""The configuration file (`agent.toml`): repository, passphrase source, sources, limits, window,
retention, checks, notifications and metrics for unattended runs.

Validated with pydantic so every mistake is reported with the field's path before any work
starts: a typo found at 01:00 by cron is a missed night. Messages are built from the field's path
and the rule it broke, never from the input: a check across a table or a mistyped table name would
otherwise print credentials. Fields holding one are marked `Secret` (agent.config.secrets).
"""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Annotated, Callable, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.config.bandwidth import RateSchedule
from agent.config.durations import parse_duration
from agent.config.secrets import Secret
from agent.config.settings import parse_percent, read_user_file
from agent.config.sizes import parse_size
from agent.config.times import next_clock_time
from agent.errors import AgentError, UsageError
from agent.maintenance.retention import parse_window
from agent.nightly.metrics import MetricsConfig
from agent.nightly.notify import NotifyConfig


def _parsed_by(parser: Callable[[str], object]) -> AfterValidator:
    """For a string field the CLI's own parser must accept; its UsageError becomes a validation error
    naming the field, so the file and the flags accept exactly the same forms."""
    def check(value: str) -> str:
        try:
            parser(value)
        except AgentError as exc:
            raise ValueError(str(exc)) from None
        return value
    return AfterValidator(check)


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


Rate = Annotated[str, _parsed_by(RateSchedule.parse)]
ClockTime = Annotated[str, _parsed_by(next_clock_time)]
RunDuration = Annotated[str, _parsed_by(parse_duration)]
RetentionSpan = Annotated[str, _parsed_by(parse_window)]
PingUrl = Annotated[str, AfterValidator(_http_url)]
Share = Annotated[str, _parsed_by(lambda t: parse_percent(t, "a share"))]
PositiveShare = Annotated[str, _parsed_by(lambda t: parse_percent(t, "a share", allow_zero=False))]
Size = Annotated[str, _parsed_by(parse_size)]


Location = Annotated[str, Secret("location")]  # a repository URL may hold a password or a secret query value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class SuspicionConfig(_Strict):
    """When a night counts as suspicious (agent.backup.suspicion; docs/suspicious-nights.md). Unset
    fields take the defaults, or in a source's own table the global `[suspicion]` values."""

    enabled: Optional[bool] = None
    factor: Optional[float] = Field(default=None, gt=1)          # new data above this many times the usual
    min_new: Optional[Size] = None                       # and above this much, e.g. "256MiB"
    min_ratio: Optional[float] = Field(default=None, ge=0, le=1)  # stored/raw of the new data at least this
    min_history: Optional[int] = Field(default=None, ge=1)       # earlier nights needed before judging
    history: Optional[int] = Field(default=None, ge=1, le=62)    # nights the usual is the median of

    def thresholds(self, base=None):
        """These values over `base` (agent.backup.suspicion.Thresholds; default: its defaults)."""
        from agent.backup.suspicion import Thresholds

        return (base or Thresholds()).override(
            enabled=self.enabled, factor=self.factor, min_ratio=self.min_ratio, min_history=self.min_history,
            history=self.history, min_new_bytes=parse_size(self.min_new) if self.min_new is not None else None)


class SourceConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(min_length=1)
    tags: list[str] = []
    direct_io: bool = True  # read with O_DIRECT (agent backup --no-direct-io: false)
    all_blocks: bool = False  # store free space too (agent backup --all-blocks)
    keep_pagefile: bool = False  # store NTFS pagefile.sys, hiberfil.sys, swapfile.sys (--keep-pagefile)
    partitions: list[str] = []  # only these partitions (--partitions); empty: all
    pre: Optional[str] = None  # shell command run before the backup (e.g. take an LVM snapshot)
    post: Optional[str] = None  # run after it, also when it failed (e.g. remove the snapshot)
    hook_timeout_s: float = Field(600, gt=0)
    #: healthchecks.io-style check: GET URL/start before the backup, URL on success, URL/fail with the reason
    healthcheck: Annotated[Optional[PingUrl], Secret("url")] = Field(None, repr=False)
    suspicion: SuspicionConfig = SuspicionConfig()  # this source's thresholds over the global [suspicion]


class LimitsConfig(_Strict):
    upload: Optional[Rate] = None
    download: Optional[Rate] = None


class WindowConfig(_Strict):
    stop_at: Optional[ClockTime] = None
    max_duration: Optional[RunDuration] = None


class CopyConfig(_Strict):
    """`agent copy` to another repository after the backups (`[[copies]]`, docs/copies.md)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    repository: Location = Field(min_length=1)
    passphrase_file: Optional[str] = None
    passphrase_command: Optional[str] = None
    sources: list[str] = []  # names of the sources whose snapshots to copy; empty: all of this host's
    limits: LimitsConfig = LimitsConfig()  # the target's upload and the source's download limits
    window: WindowConfig = WindowConfig()  # its own stop, within the run's window


class RetentionConfig(_Strict):
    keep_last: int = Field(0, ge=0)
    keep_hourly: int = Field(0, ge=0)
    keep_daily: int = Field(0, ge=0)
    keep_weekly: int = Field(0, ge=0)
    keep_monthly: int = Field(0, ge=0)
    keep_yearly: int = Field(0, ge=0)
    keep_within: Optional[RetentionSpan] = None
    keep_tag: list[str] = []
    prune: bool = True
    max_unused: Share = "5%"

    @model_validator(mode="after")
    def _some_rule(self):
        if self.policy().is_empty():
            raise ValueError("set at least one keep_* rule (or remove [retention] to keep every snapshot)")
        return self

    def policy(self):
        from agent.maintenance.retention import Policy

        return Policy(last=self.keep_last, hourly=self.keep_hourly, daily=self.keep_daily, weekly=self.keep_weekly,
                      monthly=self.keep_monthly, yearly=self.keep_yearly, tags=list(self.keep_tag),
                      within=parse_window(self.keep_within) if self.keep_within else None)


class CheckConfig(_Strict):
    read_data_subset: Optional[PositiveShare] = None  # e.g. "2%": authenticate a random share of packs after backups


class VerifyConfig(_Strict):
    """`agent verify` of each source's newest snapshot when its last clean verify is `every` old."""

    every: Optional[RetentionSpan] = None  # e.g. "7d" or "1w"; unset: never
    fsck: bool = True  # also check each partition's filesystem with its own checker
    sources: list[str] = []  # names of the sources to verify; empty: all

    def interval(self):
        return parse_window(self.every) if self.every else None


class StatusConfig(_Strict):
    """`agent status`: when a source counts as stale."""

    stale_after: RetentionSpan = "36h"
    #: per host or "host:source" (fnmatch patterns, first match wins), e.g. {"db*" = "12h", "laptop" = "8d"}
    stale_after_for: dict[str, RetentionSpan] = {}

    def policy(self):
        from agent.maintenance.fleet import StalePolicy

        return StalePolicy(parse_window(self.stale_after),
                           tuple((k, parse_window(v)) for k, v in self.stale_after_for.items()))


class LogConfig(_Strict):
    syslog: bool = False  # also log warnings, errors and summaries to syslog (journald reads it too)
    progress_interval_s: float = Field(default=60, gt=0)  # plain progress lines when not on a terminal


class Config(_Strict):
    repository: Optional[Location] = None
    passphrase_file: Optional[str] = None
    passphrase_command: Optional[str] = None
    host: Optional[str] = None
    env: Annotated[dict[str, str], Secret()] = {}  # backend credentials for the SDKs (AWS_ACCESS_KEY_ID, ...): a secret
    limits: LimitsConfig = LimitsConfig()
    window: WindowConfig = WindowConfig()
    sources: list[SourceConfig] = []
    copies: list[CopyConfig] = []
    retention: Optional[RetentionConfig] = None
    check: CheckConfig = CheckConfig()
    verify: VerifyConfig = VerifyConfig()
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()
    status: StatusConfig = StatusConfig()
    suspicion: SuspicionConfig = SuspicionConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dup)}")
        unknown = sorted(set(self.verify.sources) - set(names))
        if unknown:
            raise ValueError(f"verify.sources names no source called {', '.join(unknown)}")
        unknown = sorted({n for c in self.copies for n in c.sources} - set(names))
        if unknown:
            raise ValueError(f"copies.sources names no source called {', '.join(unknown)}")
        copies = [c.name for c in self.copies]
        if len(set(copies)) != len(copies):
            raise ValueError("copy names must be unique")
        for src in self.sources:
            t = self.thresholds_for(src)
            if t.min_history > t.history:
                raise ValueError(f"suspicion of source {src.name}: min_history ({t.min_history}) is more than "
                                 f"history ({t.history}), so no night would ever be judged")
        return self

    def thresholds_for(self, src: SourceConfig):
        """The source's suspicion thresholds: its own table over `[suspicion]` over the defaults."""
        return src.suspicion.thresholds(self.suspicion.thresholds())

    def secrets(self) -> list[str]:
        """What in this file is secret (so the file must not be readable by others)."""
        found = [f"env.{k}" for k in self.env]
        if self.notify.webhook is not None and self.notify.webhook.headers:
            found.append("notify.webhook.headers")
        if self.notify.apprise is not None:
            found.append("notify.apprise.urls")  # tokens and passwords live in Apprise URLs
        if self.repository and "@" in self.repository.split("://", 1)[-1].split("/", 1)[0] \
                and ":" in self.repository.split("://", 1)[-1].split("@", 1)[0]:
            found.append("repository (password in the URL)")
        return found


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_config(path: Path) -> Config:
    """Parse and validate; any problem is one UsageError naming the file, the field and the rule (a
    value only where the field's own parser quotes it: sizes, rates, times, never a credential)."""
    raw = read_user_file(path, "config", missing_hint="create it (see docs/nightly.md) or pass --config")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        cfg = Config.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting (a typo?)"
            lines.append(f"{_loc(err['loc'])}: {msg}")
        raise UsageError(f"config file {path} has {len(lines)} error(s): " + "; ".join(lines)) from None
    secrets = cfg.secrets()
    mode = stat.S_IMODE(path.stat().st_mode)
    if secrets and mode & 0o077:
        raise UsageError(f"config file {path} holds secrets ({', '.join(secrets)}) but is readable by other users "
                         f"(mode {mode:04o})", hint=f"chmod 600 {path}")
    return cfg
