"""`agent snapshots`: list snapshots."""

from __future__ import annotations

from typing import List, Optional

import typer

from agent.cli import units
from agent.cli.context import JSON_HELP, AppContext, app_context


def snapshots(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    host: Optional[str] = typer.Option(None, "--host", help="Only this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Only this source path."),
    tag: List[str] = typer.Option([], "--tag", help="Only snapshots with this tag (repeatable: all must match)."),
) -> None:
    """List snapshots: id, time, host, source, size, new data, tags."""
    from rich.table import Table

    from agent.repo.snapshots import filter_snapshots

    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        snaps = filter_snapshots(repo.list_snapshots(), host=host, source=source, tags=list(tag))
    if app.settings.json:
        app.emit_json([s.summary() for s in snaps])
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "time", "host", "source", "size", "new data", "tags"):
        table.add_column(col, justify="right" if col in ("size", "new data") else "left")
    for s in snaps:
        table.add_row(s.id[:8], s.time.astimezone().strftime("%Y-%m-%d %H:%M:%S"), s.host, s.source_path,
                      units.size(s.size), units.size(s.stats.get("stored_bytes")), ",".join(s.tags))
    app.out.print(table)
    app.info(f"{len(snaps)} snapshot(s)")


def register(app: typer.Typer) -> None:
    app.command("snapshots")(snapshots)
