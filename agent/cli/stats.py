"""`agent stats`: how much the repository stores, and how well it deduplicates."""

from __future__ import annotations

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import units


def stats(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Raw vs stored size and dedup ratio, in total and per host and source."""
    from rich.table import Table

    from agent.maintenance.stats import repo_stats

    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        st = repo_stats(repo)
    if app.settings.json:
        app.emit_json("stats", st.to_dict())
        return
    app.out.print(f"{st.snapshots} snapshot(s) of {units.size(st.logical_bytes)} in total; "
                  f"{units.size(st.raw_bytes)} of distinct data stored as {units.size(st.stored_bytes)} "
                  f"in {st.packs} pack(s): {st.dedup_ratio:.1f}x smaller than the images")
    table = Table(box=None, header_style="bold")
    for col in ("host", "source", "snapshots", "latest size", "all images", "distinct data"):
        table.add_column(col, justify="left" if col in ("host", "source") else "right")
    for g in st.groups:
        table.add_row(g.host, g.source, str(g.snapshots), units.size(g.latest_size), units.size(g.logical_bytes),
                      units.size(g.unique_raw_bytes))
    app.out.print(table)


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
