"""`agent snapshots`: list snapshots."""

from __future__ import annotations

from datetime import datetime
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
    all_runs: bool = typer.Option(False, "--all", "-a", help="Also list runs that ended without a snapshot "
                                  "(incomplete or failed; not restorable)."),
) -> None:
    """List snapshots: id, time, host, source, size, new data, tags."""
    from rich.table import Table

    from agent.repo.snapshots import filter_snapshots

    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        snaps = filter_snapshots(repo.list_snapshots(), host=host, source=source, tags=list(tag))
        runs = [(name, r) for name, r in repo.list_runs() if (host is None or r.get("host") == host)
                and (source is None or r.get("source") == source)] if all_runs else []
    if app.settings.json:
        app.emit_json([{**s.summary(), "status": "complete"} for s in snaps]
                      + [{**{k: v for k, v in r.items() if k != "packs"}, "id": name, "short_id": name[:8]} for name, r in runs] if all_runs
                      else [s.summary() for s in snaps])
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "time", "host", "source", "size", "new data", "tags"):
        table.add_column(col, justify="right" if col in ("size", "new data") else "left")
    if all_runs:
        table.add_column("status")
        rows = [(s.time, [s.id[:8], s.time.astimezone().strftime("%Y-%m-%d %H:%M:%S"), s.host, s.source_path,
                          units.size(s.size), units.size(s.stats.get("stored_bytes")), ",".join(s.tags), "complete"])
                for s in snaps]
        for name, r in runs:
            started = datetime.fromisoformat(r["started"])
            rows.append((started, [name[:8], started.astimezone().strftime("%Y-%m-%d %H:%M:%S"), r.get("host", ""),
                                   r.get("source", ""), units.size(r.get("source_bytes")),
                                   units.size(r.get("uploaded_bytes")), "",
                                   f"{r.get('status', '?')}: {r.get('reason', '')}"]))
        for _, row in sorted(rows, key=lambda x: x[0]):
            table.add_row(*row)
    else:
        for s in snaps:
            table.add_row(s.id[:8], s.time.astimezone().strftime("%Y-%m-%d %H:%M:%S"), s.host, s.source_path,
                          units.size(s.size), units.size(s.stats.get("stored_bytes")), ",".join(s.tags))
    app.out.print(table)
    app.info(f"{len(snaps)} snapshot(s)" + (f", {len(runs)} run(s) without a snapshot (not restorable)"
                                            if runs else ""))


def register(app: typer.Typer) -> None:
    app.command("snapshots")(snapshots)
