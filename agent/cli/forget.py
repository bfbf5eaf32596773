"""`agent forget`: remove snapshots by a retention policy (and optionally prune)."""

from __future__ import annotations

from typing import List, Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import stamps
from agent.config.durations import UNITS_HELP

_W = "Keep snapshots within this long of the group's newest (e.g. 14d, 2w, 6mo, 1y; m is minutes). " + UNITS_HELP


def forget(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    keep_last: int = typer.Option(0, "--keep-last", min=0, help="Keep the N newest snapshots."),
    keep_hourly: int = typer.Option(0, "--keep-hourly", min=0, help="Keep the newest snapshot of each of N hours."),
    keep_daily: int = typer.Option(0, "--keep-daily", min=0, help="Keep the newest snapshot of each of N days."),
    keep_weekly: int = typer.Option(0, "--keep-weekly", min=0, help="... of each of N ISO weeks."),
    keep_monthly: int = typer.Option(0, "--keep-monthly", min=0, help="... of each of N months."),
    keep_yearly: int = typer.Option(0, "--keep-yearly", min=0, help="... of each of N years."),
    keep_within: Optional[str] = typer.Option(None, "--keep-within", help=_W),
    keep_within_hourly: Optional[str] = typer.Option(None, "--keep-within-hourly", help="One per hour within."),
    keep_within_daily: Optional[str] = typer.Option(None, "--keep-within-daily", help="One per day within."),
    keep_within_weekly: Optional[str] = typer.Option(None, "--keep-within-weekly", help="One per week within."),
    keep_within_monthly: Optional[str] = typer.Option(None, "--keep-within-monthly", help="One per month within."),
    keep_within_yearly: Optional[str] = typer.Option(None, "--keep-within-yearly", help="One per year within."),
    keep_tag: List[str] = typer.Option([], "--keep-tag", help="Keep snapshots with this tag (repeatable)."),
    host: Optional[str] = typer.Option(None, "--host", help="Only consider this host's snapshots."),
    source: Optional[str] = typer.Option(None, "--source", help="Only consider this source path."),
    group_by: str = typer.Option("host,source", "--group-by", help="Apply the policy per group: any of host, "
                                 "source, tags (comma-separated)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would be removed; change nothing."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Allow removing every snapshot of a group."),
    prune: bool = typer.Option(False, "--prune", help="Prune unreferenced data afterwards."),
) -> None:
    """Forget snapshots that no --keep rule keeps (grouped per host and source)."""
    from agent.errors import UsageError
    from agent.maintenance.forget import forget as do_forget
    from agent.maintenance.forget import plan_forget, protected_in
    from agent.maintenance.retention import Policy, parse_window
    from agent.repo.snapshots import filter_snapshots

    app: AppContext = app_context(ctx, json_output)
    groups = tuple(g.strip() for g in group_by.split(",") if g.strip())
    if not groups or any(g not in ("host", "source", "tags") for g in groups):
        raise UsageError("--group-by takes host, source and/or tags")
    dur = {k: parse_window(v, '--keep-' + k.replace('_', '-')) if v else None for k, v in {
        "within": keep_within, "within_hourly": keep_within_hourly, "within_daily": keep_within_daily,
        "within_weekly": keep_within_weekly, "within_monthly": keep_within_monthly,
        "within_yearly": keep_within_yearly}.items()}
    policy = Policy(last=keep_last, hourly=keep_hourly, daily=keep_daily, weekly=keep_weekly, monthly=keep_monthly,
                    yearly=keep_yearly, tags=list(keep_tag), **dur)
    with app.repository() as repo:
        snaps = filter_snapshots(repo.list_snapshots(), host=host, source=source)
        plan = plan_forget(snaps, policy, group_by=groups, allow_empty=allow_empty,
                           protected=protected_in(repo, snaps))
        if not app.settings.json:
            _print_plan(app, plan, policy, dry_run)
        if not dry_run:
            lock = repo.lock(exclusive=False, command="forget")
            try:
                do_forget(repo, plan)
            finally:
                lock.release()
        pruned = None
        if prune and not dry_run:
            from agent.cli.prune import print_prune
            from agent.maintenance.prune import run_prune

            pruned = run_prune(repo, lock_wait=1800)
            if not app.settings.json:
                print_prune(app, pruned)
    if app.settings.json:
        app.emit_json("forget", {"keep": [s.id for s in plan.keep], "remove": [s.id for s in plan.remove],
                                 "dry_run": dry_run,
                       "reasons": {d.snapshot.id: d.reasons for ds in plan.groups.values() for d in ds if d.keep},
                       "prune": pruned.to_dict() if pruned else None})


def _print_plan(app: AppContext, plan, policy, dry_run: bool) -> None:
    from rich.table import Table

    app.details.print(f"policy: {policy.describe()}")
    for key, decisions in plan.groups.items():
        table = Table(title=":".join(key), box=None, header_style="bold", title_justify="left")
        for col in ("id", "time", "action", "kept by"):
            table.add_column(col)
        for d in decisions:
            table.add_row(d.snapshot.id[:8], stamps.human(d.snapshot.time),
                          "keep" if d.keep else ("would remove" if dry_run else "remove"), ", ".join(d.reasons))
        app.details.print(table)
    verb = "would remove" if dry_run else "removed"
    app.out.print(f"{len(plan.keep)} kept, {len(plan.remove)} {verb}")


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
