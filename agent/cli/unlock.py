"""`agent unlock`: remove stale locks left by crashed runs."""

from __future__ import annotations

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context


def unlock(ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
           remove_all: bool = typer.Option(False, "--remove-all", help="Also remove locks that look alive.")) -> None:
    """Remove stale locks (older than 30 minutes, or whose process is gone)."""
    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        n = repo.remove_locks(all_locks=remove_all)
    if app.settings.json:
        app.emit_json("unlock", {"removed": n})
    else:
        app.out.print(f"removed {n} lock(s)")


def register(app: typer.Typer) -> None:
    app.command("unlock")(unlock)
