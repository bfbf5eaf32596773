"""`agent run`: everything the config file asks for, in order, as one unattended job.

Sources are backed up one after the other (one disk saturates the link; parallel runs would only
fight over it), each between its pre and post hooks. Retention and prune follow only when every
source completed inside the window: a prune after an incomplete run would spend the night's
remaining minutes and the link on housekeeping. Then, while the window lasts, each source whose
[verify] is due has its newest snapshot verified (whether or not tonight's backup worked: the
stored snapshots are what a restore would use). The outcome is one RunReport, whatever failed.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable, Iterator

from agent.config.settings import parse_percent
from agent.errors import AgentError
from agent.nightly.configfile import Config, CopyConfig, SourceConfig
from agent.nightly.hooks import HookConfig, run_source_hook
from agent.nightly.report import CopyReport, RunReport, SourceReport, VerifyReport
from agent.progress import Listener, Warning

OpenRepo = Callable[[], AbstractContextManager]  # yields an open agent.repo.repository.Repository
OpenTarget = Callable[[CopyConfig], AbstractContextManager]  # yields a `[[copies]]` target, opened


@dataclass
class RunOptions:
    deadline: datetime | None = None
    stop: threading.Event | None = None
    lock_wait: float = 1800.0
    host: str | None = None
    #: per source name, when its newest snapshot last verified clean (agent.nightly.state)
    last_verified: dict[str, datetime] = field(default_factory=dict)


class RunAlreadyActive(AgentError):
    exit_code = 1
    hint = "wait for it to finish; overlapping runs would only compete for the same link"


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """One `agent run` per machine at a time (timer and a manual run, or a run that overran a day)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunAlreadyActive(f"another `agent run` is in progress (pid {other})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _reportable(exc: BaseException) -> bool:
    """An agent error (or a storage error that escaped translation), not a bug."""
    from agent.repo.storage import as_agent_error

    return as_agent_error(exc) is not None


def _failure(exc: BaseException) -> tuple[str, str | None]:
    from agent.repo.storage import as_agent_error

    err = as_agent_error(exc)
    if err is not None:
        return str(err), err.hint or None
    return f"internal error: {exc.__class__.__name__}: {exc}", "please report it with the output of --debug"


def _backup_source(repo, src: SourceConfig, opts: RunOptions, listener: Listener,
                   hide: tuple[str, ...] = (), suspicion=None) -> SourceReport:
    from agent.backup.run import BackupOptions, run_backup
    from agent.backup.suspicion import Thresholds, describe

    hooks = HookConfig(pre=src.pre, post=src.post, timeout_s=src.hook_timeout_s)
    rep = SourceReport(name=src.name, path=src.path, status="failed")
    pre = run_source_hook(hooks, "pre", src.name, src.path, hide=hide)
    if pre is not None and not pre.ok:
        rep.status, rep.error = "skipped", pre.error_message
        rep.hint = "fix the pre hook; the source was not backed up"
    else:
        try:
            res = run_backup(repo, src.path, BackupOptions(tags=list(src.tags), host=opts.host,
                                                           deadline=opts.deadline, stop=opts.stop,
                                                           lock_wait=opts.lock_wait, direct_io=src.direct_io,
                                                           all_blocks=src.all_blocks, keep_pagefile=src.keep_pagefile,
                                                           partitions=list(src.partitions),
                                                           suspicion=suspicion or Thresholds()),
                             listener)
        except Exception as exc:
            if not _reportable(exc):
                raise
            rep.error, rep.hint = _failure(exc)
        else:
            rep.status = "ok" if res.complete else "incomplete"
            rep.snapshot_id, rep.read_bytes, rep.new_bytes = res.snapshot_id, res.read_bytes, res.new_bytes
            rep.skipped_free_bytes = res.skipped_free_bytes
            rep.uploaded_bytes, rep.duration_s, rep.warnings = res.uploaded_bytes, res.duration_s, list(res.warnings)
            if res.suspicious is not None:
                rep.suspicious = {**res.suspicious, "message": describe(res.suspicious),
                                  "protected_snapshot": res.protected_id}
            if not res.complete:
                rep.error = f"stopped early: {res.stopped}"
                rep.hint = "the next run resumes from what was uploaded; widen the window or raise the limit"
    post = run_source_hook(hooks, "post", src.name, src.path, status=rep.status, hide=hide)
    if post is not None and not post.ok:
        rep.warnings.append(post.error_message or "post hook failed")
    return rep


def _maintenance(repo, cfg: Config, host: str, opts: RunOptions, errors: list[str]) -> None:
    from agent.maintenance.forget import forget, plan_forget, protected_in
    from agent.maintenance.prune import run_prune
    from agent.repo.snapshots import filter_snapshots

    retention = cfg.retention
    assert retention is not None  # run_configured calls this only when the config has [retention]
    try:
        paths = {s.path for s in cfg.sources}
        snaps = [s for s in filter_snapshots(repo.list_snapshots(), host=host) if s.source_path in paths]
        plan = plan_forget(snaps, retention.policy(), group_by=("host", "source"), protected=protected_in(repo, snaps))
        if plan.remove:
            with repo.lock(exclusive=False, command="forget", wait=opts.lock_wait):
                forget(repo, plan)
        if retention.prune and plan.remove:
            run_prune(repo, max_unused=parse_percent(retention.max_unused, "max_unused"),
                      lock_wait=opts.lock_wait)
    except AgentError as exc:
        message, hint = _failure(exc)
        errors.append(f"retention: {message}" + (f" ({hint})" if hint else ""))


def _count_unacknowledged(repo, cfg: Config, host: str, report: RunReport) -> None:
    """Per source, its suspicious nights still waiting for `agent ack` (they keep snapshots from forget)."""
    from agent.maintenance.protection import acknowledged_ids, suspects
    from agent.repo.snapshots import filter_snapshots

    try:
        found = suspects(filter_snapshots(repo.list_snapshots([]), host=host), acknowledged_ids(repo))
    except AgentError as exc:
        message, _ = _failure(exc)
        report.errors.append(f"suspicious nights: {message}")
        return
    for src, rep in zip(cfg.sources, report.sources):
        rep.suspicious_unacknowledged = sum(1 for s in found if s.snapshot.source_path == src.path
                                            and not s.acknowledged)


def _check(repo, share: float, errors: list[str]) -> None:
    from agent.maintenance.check import run_check

    try:
        with repo.lock(exclusive=False, command="check"):
            rep = run_check(repo, read_data=True, subset=share)
        errors.extend(f"check: {e}" for e in rep.errors)
    except AgentError as exc:
        message, hint = _failure(exc)
        errors.append(f"check: {message}" + (f" ({hint})" if hint else ""))


def verify_due(cfg: Config, src: SourceConfig, last_verified: dict[str, datetime], now: datetime) -> bool:
    """Whether [verify] asks for this source now: configured for it, and never verified clean or
    at least `every` ago."""
    every = cfg.verify.interval()
    if every is None or (cfg.verify.sources and src.name not in cfg.verify.sources):
        return False
    last = last_verified.get(src.name)
    return last is None or now - last >= every


def _verify_source(repo, src: SourceConfig, host: str, fsck: bool, opts: RunOptions) -> VerifyReport:
    """`agent verify [--fsck]` of the source's newest snapshot; a failure to verify is reported, not raised."""
    from agent.repo.snapshots import filter_snapshots, resolve
    from agent.verify.run import VerifyOptions, run_verify

    warnings: list[str] = []

    def listener(event) -> None:
        if isinstance(event, Warning):
            warnings.append(event.message)

    try:
        snap = resolve(filter_snapshots(repo.list_snapshots([]), host=host, source=src.path), "latest")
        res = run_verify(repo, snap, VerifyOptions(fsck=fsck, lock_wait=opts.lock_wait), listener)
    except Exception as exc:
        if not _reportable(exc):
            raise
        message, hint = _failure(exc)
        return VerifyReport("failed", fsck=fsck, error=message, hint=hint, warnings=warnings)
    data = res.to_dict()
    return VerifyReport(res.status, snapshot_id=res.snapshot_id, fsck=fsck, damaged_bytes=res.damaged_bytes,
                        damaged_ranges=[[d.offset, d.length] for d in res.damaged],
                        partitions=data["partitions"] or [], duration_s=res.duration_s, warnings=warnings)


def _verify_due_sources(repo, cfg: Config, host: str, opts: RunOptions, report: RunReport) -> None:
    for src, rep in zip(cfg.sources, report.sources):
        if _window_over(opts):
            return  # still due: the next run verifies
        if verify_due(cfg, src, opts.last_verified, datetime.now(UTC)):
            rep.verify = _verify_source(repo, src, host, cfg.verify.fsck, opts)


def run_configured(cfg: Config, open_repo: OpenRepo, repository_label: str, opts: RunOptions,
                   progress: Callable[[SourceConfig], AbstractContextManager],
                   on_source: Callable[[SourceReport], None] = lambda r: None,
                   open_target: OpenTarget | None = None, label_of: Callable[[str], str] = str) -> RunReport:
    """Back up every source, then retention, checks and the verifies that are due. Never raises for a
    failure of the work itself (it goes into the report, so it can be notified); only for bugs."""
    host = opts.host or cfg.host or socket.gethostname()
    opts.host = host
    report = RunReport(host=host, repository=repository_label, started=datetime.now(UTC),
                       finished=datetime.now(UTC), sources=[])
    try:
        with open_repo() as repo:
            for src in cfg.sources:
                if _window_over(opts):
                    rep = SourceReport(src.name, src.path, "skipped", error="the backup window ended before it started",
                                       hint="widen the window (--stop-at / --max-duration) "
                                            "or order sources by priority")
                else:
                    _ping(src, "start", "", report)
                    with progress(src) as listener:
                        rep = _backup_source(repo, src, opts, listener, tuple(cfg.env), cfg.thresholds_for(src))
                report.sources.append(rep)
                _ping_outcome(src, rep, report)
                on_source(rep)
            _count_unacknowledged(repo, cfg, host, report)
            complete = all(r.status == "ok" for r in report.sources)
            if cfg.retention is not None and complete and not _window_over(opts):
                _maintenance(repo, cfg, host, opts, report.errors)
            if cfg.check.read_data_subset and complete and not _window_over(opts):
                _check(repo, parse_percent(cfg.check.read_data_subset, "read_data_subset"), report.errors)
            _verify_due_sources(repo, cfg, host, opts, report)
            if open_target is not None:
                for copy_cfg in cfg.copies:
                    report.copies.append(_copy(repo, cfg, copy_cfg, host, opts, open_target, label_of))
            try:
                report.repository_bytes = sum(repo.list_packs().values())
                report.snapshot_count = len(repo.list_snapshots([]))
            except AgentError:
                pass  # metrics only; the backups themselves are reported
    except AgentError as exc:  # the repository could not be opened or failed mid-run (storage errors arrive translated)
        message, hint = _failure(exc)
        done = {r.name for r in report.sources}
        for src in cfg.sources:
            if src.name not in done:
                rep = SourceReport(src.name, src.path, "failed", error=message, hint=hint)
                report.sources.append(rep)
                _ping_outcome(src, rep, report)
                on_source(rep)
    report.finished = datetime.now(UTC)
    return report


def _ping(src: SourceConfig, kind, body: str, report: RunReport) -> None:
    """The source's healthcheck ping, if it has one; a failed ping is noted, never raised."""
    if src.healthcheck:
        from agent.nightly.healthchecks import ping

        problem = ping(src.healthcheck, kind, body)
        if problem:
            report.delivery_problems.append(f"{src.name}: {problem}")


def _ping_outcome(src: SourceConfig, rep: SourceReport, report: RunReport) -> None:
    if rep.status == "ok":
        _ping(src, "success", f"snapshot {rep.snapshot_id}, new {rep.new_bytes} bytes", report)
    else:
        _ping(src, "fail", f"{rep.status}: {rep.error or 'no reason recorded'}", report)


def _copy(repo, cfg: Config, copy_cfg: CopyConfig, host: str, opts: RunOptions, open_target: OpenTarget,
          label_of: Callable[[str], str]) -> CopyReport:
    """`agent copy` of this host's snapshots (of the named sources) to one `[[copies]]` target, inside
    both the run's window and the copy's own; a failure is reported, not raised."""
    from agent.config.times import run_deadline
    from agent.copy.options import CopyOptions
    from agent.copy.run import run_copy

    rep = CopyReport(copy_cfg.name, label_of(copy_cfg.repository), "skipped")
    if _window_over(opts):
        rep.error = "the backup window ended before the copy started"
        return rep
    own = run_deadline(copy_cfg.window.stop_at, copy_cfg.window.max_duration)
    deadline = min((d for d in (opts.deadline, own) if d is not None), default=None)
    paths: list[str | None] = [s.path for s in cfg.sources if s.name in copy_cfg.sources] or [None]
    warnings: list[str] = []

    def listener(event) -> None:
        if isinstance(event, Warning):
            warnings.append(event.message)

    try:
        with open_target(copy_cfg) as dst:
            for path in paths:
                res = run_copy(repo, dst, CopyOptions(host=host, source=path, lock_wait=opts.lock_wait,
                                                      deadline=deadline, stop=opts.stop), listener)
                rep.copied += len(res.copied)
                rep.skipped += len(res.skipped)
                rep.read_bytes += res.read_bytes
                rep.uploaded_bytes += res.uploaded_bytes
                rep.duration_s += res.duration_s
                if res.stopped:
                    rep.status, rep.error = "incomplete", f"{res.stopped}; the next run resumes"
                    break
            else:
                rep.status = "ok"
    except AgentError as exc:
        rep.status = "failed"
        rep.error, rep.hint = _failure(exc)
    rep.warnings = warnings
    return rep


def _window_over(opts: RunOptions) -> bool:
    if opts.stop is not None and opts.stop.is_set():
        return True
    return opts.deadline is not None and datetime.now(UTC) >= opts.deadline
