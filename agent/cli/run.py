"""`agent run`: the nightly job. Backs up every source in the config file, applies retention,
checks a share of the data, then records the outcome (state file, metrics) and notifies."""

from __future__ import annotations

from datetime import UTC
from typing import Optional

import typer

from agent.cli.backup import LIMIT_HELP
from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import units
from agent.config.durations import UNITS_HELP


def run(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    stop_at: Optional[str] = typer.Option(None, "--stop-at", help="End of the backup window (HH:MM, local time); "
                                          "overrides window.stop_at."),
    max_duration: Optional[str] = typer.Option(None, "--max-duration", help="Longest run (5h, 90m); overrides "
                                               "window.max_duration. " + UNITS_HELP),
    limit_upload: Optional[str] = typer.Option(None, "--limit-upload", help=LIMIT_HELP),
    limit_download: Optional[str] = typer.Option(None, "--limit-download", help="Download limit, same forms."),
) -> None:
    """Run everything the config file asks for: backups, retention, checks, due verifies, then report.

    Exit status 0 when everything succeeded, 3 when a source is incomplete or skipped or a
    warning was raised (the next run resumes), 1 when something failed (a verify found damage).
    """
    from agent.cli.stopping import graceful_stop
    from agent.config.times import run_deadline
    from agent.errors import UsageError
    from agent.nightly.runner import RunOptions, run_configured, run_lock
    from agent.nightly.state import default_state_path, record_finish, record_start
    from backends.registry import redact_url

    app: AppContext = app_context(ctx, json_output)
    cfg = app.config_file
    if cfg is None:
        raise UsageError("no config file found for `agent run`",
                         hint="write /etc/agent/agent.toml (see docs/nightly.md) or pass --config PATH")
    if not cfg.sources:
        raise UsageError(f"the config file {app.settings.config_path} lists no [[sources]]")
    app.set_limits(limit_upload, limit_download)
    deadline = run_deadline(stop_at or cfg.window.stop_at, max_duration or cfg.window.max_duration)
    state_path = default_state_path()
    label = redact_url(app.settings.repo) if app.settings.repo else "(no repository configured)"

    def progress(src):
        return app.progress(f"backup {src.name}")

    def on_source(rep) -> None:
        if app.settings.json:
            from dataclasses import asdict

            app.emit_json("source", asdict(rep))
            return
        line = {"ok": f"snapshot {(rep.snapshot_id or '')[:8]}", "incomplete": "INCOMPLETE",
                "skipped": "SKIPPED", "failed": "FAILED"}[rep.status]
        out = app.out if rep.status != "ok" else app.details  # -q: problems only
        out.print(f"{rep.name} ({rep.path}): {line}, new {units.size(rep.new_bytes)}, uploaded "
                      f"{units.size(rep.uploaded_bytes)}, {units.duration(rep.duration_s)}")
        for w in rep.warnings:
            app.out.print(f"  warning: {w}")
        from agent.nightly.notify import suspicious_lines

        for line in suspicious_lines(rep):
            app.out.print(line, markup=False)
        if rep.error:
            app.out.print(f"  {rep.error}")
        if rep.hint and rep.status != "ok":
            app.out.print(f"  hint: {rep.hint}")

    with run_lock(state_path.with_name("run.lock")), graceful_stop() as stop:
        state = record_start(state_path, _now())
        report = run_configured(cfg, app.repository, label,
                                RunOptions(deadline=deadline, stop=stop, host=cfg.host,
                                           last_verified=state.last_verified), progress, on_source,
                                open_target=lambda c: _copy_target(app, c), label_of=redact_url)
        record_finish(state_path, report)
        problems = _publish(app, cfg, report)
    _print_outcome(app, report, problems)
    raise typer.Exit(report.exit_code)


def _copy_target(app: AppContext, copy_cfg):
    """The `[[copies]]` target, with its own passphrase source and limits (flags and env for the main
    repository do not apply to it)."""
    from agent.config.settings import OtherRepo

    other = OtherRepo(copy_cfg.repository, copy_cfg.passphrase_file, copy_cfg.passphrase_command)
    return app.other_repository(other, limit_upload=copy_cfg.limits.upload, limit_download=None)


def _now():
    from datetime import datetime

    return datetime.now(UTC)


def _publish(app: AppContext, cfg, report) -> list[str]:
    """Metrics and notifications; their failures are reported but never change the run's result."""
    from agent.nightly.notify import send_notifications

    problems = []
    if cfg.metrics.textfile:
        from agent.nightly.metrics import write_textfile

        try:
            write_textfile(cfg.metrics.textfile, report)
        except OSError as exc:
            problems.append(f"metrics file {cfg.metrics.textfile} not written: {exc.strerror or exc}")
    problems += report.delivery_problems
    problems += [f"notification not delivered: {e}" for e in send_notifications(cfg.notify, report)]
    for p in problems:
        app.warn(p)
    return problems


def _print_outcome(app: AppContext, report, problems: list[str]) -> None:
    from agent.nightly.report import summarize

    summary = summarize(report)
    app.log_summary(summary, error=report.status == "failure")
    if app.settings.json:
        app.emit_json("run", {**report.to_dict(), "delivery_problems": problems})
        return
    from agent.nightly.notify import verify_lines

    for s in report.sources:
        if s.verify is not None:
            app.details.print(f"{s.name} ({s.path}):", markup=False)
            for line in verify_lines(s.verify):
                app.details.print(line, markup=False)
    for c in report.copies:
        line = {"ok": "copied", "incomplete": "INCOMPLETE", "skipped": "SKIPPED", "failed": "FAILED"}[c.status]
        out = app.out if c.status != "ok" else app.details
        out.print(f"copy {c.name} to {c.target}: {line}, {c.copied} snapshot(s) copied, {c.skipped} already "
                      f"there, uploaded {units.size(c.uploaded_bytes)}", markup=False)
        for w in c.warnings:
            app.out.print(f"  warning: {w}", markup=False)
        if c.error:
            app.out.print(f"  {c.error}", markup=False)
    for e in report.errors:
        app.out.print(f"error: {e}")
    app.out.print(f"{summary} ({units.duration(report.duration_s)})")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
