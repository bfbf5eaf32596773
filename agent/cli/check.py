"""`agent check`: verify the repository's structure, and optionally its data."""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context


def _subset(value: Optional[str]) -> tuple[Optional[float], Optional[tuple[int, int]]]:
    """`10%` (random share, different each run) or `n/t` (the n-th of t fixed slices)."""
    if value is None:
        return None, None
    from agent.errors import UsageError

    if "/" in value:
        try:
            n, t = (int(x) for x in value.split("/"))
        except ValueError:
            raise UsageError(f"--read-data-subset takes 10% or n/t (e.g. 3/20), not {value!r}") from None
        if not 1 <= n <= t:
            raise UsageError("--read-data-subset n/t needs 1 <= n <= t")
        return None, (n, t)

    from agent.config.settings import parse_percent

    return parse_percent(value, "--read-data-subset", allow_zero=False), None


def check(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    read_data: bool = typer.Option(False, "--read-data", help="Download and authenticate every pack."),
    read_data_subset: Optional[str] = typer.Option(None, "--read-data-subset", help="Download a random share of the "
                                                   "packs (10%: different each run) or the n-th of t slices (3/20)."),
    lock_wait: int = typer.Option(0, "--lock-wait", help="Seconds to wait for a running prune to finish."),
) -> None:
    """Check that every snapshot's chunks are indexed and every indexed pack exists with the right size;
    report leftovers of interrupted writes and stale locks."""
    from agent.maintenance.check import run_check

    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        lock = repo.lock(exclusive=False, command="check", wait=lock_wait)
        try:
            with app.progress("check") as listener:
                share, part = _subset(read_data_subset)
                rep = run_check(repo, read_data=read_data, subset=share, part=part, listener=listener)
        finally:
            lock.release()
    if app.settings.json:
        app.emit_json("check", rep.to_dict())
    else:
        for w in rep.warnings:
            app.warn(w)
        for e in rep.errors:
            app.out.print(f"[red]error:[/] {e}")
        for snap_id, ranges in rep.affected.items():
            spans = ", ".join(f"{o}..{o + n}" for o, n in ranges[:5]) + (" ..." if len(ranges) > 5 else "")
            app.out.print(f"  snapshot {snap_id[:8]} is affected at image bytes {spans}")
        read = f", {rep.packs_read} read and authenticated" if rep.packs_read else ""
        verdict = "no errors" if rep.ok else f"{len(rep.errors)} error(s)"
        app.out.print(f"checked {rep.snapshots} snapshot(s), {rep.packs} pack(s){read}: {verdict}")
    if not rep.ok:
        raise typer.Exit(14)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
