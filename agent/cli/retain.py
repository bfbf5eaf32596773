"""`agent retain`: extend the S3 Object Lock retention of what live snapshots use (maintenance
credential; docs/ransomware.md). Run it nightly, or at least more often than the margin."""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config.durations import UNITS_HELP


def retain(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    period: Optional[str] = typer.Option(None, "--period", help="Extend to now plus this long (e.g. 30d). "
                                         "Default: the bucket's default retention."),
    margin: Optional[str] = typer.Option(None, "--margin", help="Extend what lapses within this long (e.g. 7d). "
                                         "Default: 7 days, or a quarter of a shorter period. " + UNITS_HELP),
    time: Optional[str] = typer.Option(None, "--time", help="Act as if it were this time (tests, rehearsals)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Count what is due; extend nothing."),
    lock_wait: int = typer.Option(1800, "--lock-wait", help="Seconds to wait for a running prune to finish."),
) -> None:
    """Extend the Object Lock retention of every object live snapshots use, when it is about to lapse."""
    from datetime import UTC, datetime

    from agent.config.times import parse_instant
    from agent.maintenance.retain import run_retain
    from agent.maintenance.retention import parse_window

    app: AppContext = app_context(ctx, json_output)
    now = parse_instant(time) if time else datetime.now(UTC)
    with app.repository() as repo, app.progress("retain") as listener:
        res = run_retain(repo, now=now.astimezone(UTC), period=parse_window(period, "--period") if period else None,
                         margin=parse_window(margin, "--margin") if margin else None, dry_run=dry_run,
                         lock_wait=lock_wait, listener=listener)
        ops = app.accounting.snapshot().operations if app.accounting else {}
    if app.settings.json:
        app.emit_json("retain", {**res.to_dict(), "requests": dict(ops)})
        return
    verb = "would extend" if dry_run else "extended"
    app.out.print(f"{verb} the {res.mode} retention of {res.extended} of {res.live_objects} live object(s) "
                  f"to {res.until}")
    if res.next_due:
        app.out.print(f"every live object is retained until at least {res.held_until}; the next "
                      f"{res.next_due_objects} fall due on {res.next_due}")


def register(app: typer.Typer) -> None:
    app.command("retain")(retain)
