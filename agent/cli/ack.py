"""`agent ack`: list suspicious nights, or acknowledge one so `forget` may remove what it protects."""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import stamps


def ack(
    ctx: typer.Context,
    snapshot: Optional[str] = typer.Argument(None, help="The suspicious snapshot (id prefix); none: list them."),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    note: str = typer.Option("", "--note", help="Why it is fine (kept with the acknowledgement)."),
    host: Optional[str] = typer.Option(None, "--host", help="Only this host's snapshots."),
    source: Optional[str] = typer.Option(None, "--source", help="Only this source path."),
) -> None:
    """Acknowledge a suspicious night (new data far above usual, incompressible): until then, `forget` keeps
    it and the snapshot before it. Without SNAPSHOT, list the suspicious nights."""
    from agent.maintenance.protection import acknowledge, acknowledged_ids, suspects
    from agent.repo.snapshots import filter_snapshots, resolve

    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        damaged: list[tuple[str, str]] = []
        snaps = filter_snapshots(repo.list_snapshots(damaged), host=host, source=source)
        if snapshot is None:
            found = suspects(snaps, acknowledged_ids(repo))
        else:
            target = resolve(snaps, snapshot)
            done = acknowledge(repo, target, note)
    for name, problem in damaged:
        app.warn(f"snapshot {name[:8]} is not listed: {problem}; `agent check` reports it")
    if snapshot is None:
        _list(app, found)
        return
    if app.settings.json:
        app.emit_json("ack", {"snapshot": target.id, "acknowledged": True, "already": done is None})
    elif done is None:
        app.out.print(f"snapshot {target.id[:8]} was already acknowledged")
    else:
        app.out.print(f"acknowledged suspicious snapshot {target.id[:8]} ({target.host} {target.source_path}); "
                      "`forget` no longer keeps it or the snapshot before it")
        app.log_summary(f"suspicious snapshot {target.id[:8]} acknowledged by {done.user}@{done.host}")


def _list(app: AppContext, found) -> None:
    from agent.backup.suspicion import describe

    if app.settings.json:
        app.emit_json("ack", {"suspicious": [
            {"snapshot": s.snapshot.id, "time": s.snapshot.summary()["time"], "host": s.snapshot.host,
             "source": s.snapshot.source_path, "acknowledged": s.acknowledged,
             "protects": s.before.id if s.before else None, "suspicious": s.snapshot.suspicious} for s in found]})
        return
    if not found:
        app.out.print("no suspicious nights")
        return
    for s in found:
        state = "acknowledged" if s.acknowledged else (
            "NOT acknowledged: keeps " + (f"snapshot {s.before.id[:8]}" if s.before else "itself"))
        app.out.print(f"{s.snapshot.id[:8]}  {stamps.human(s.snapshot.time)}  "
                      f"{s.snapshot.host}  {s.snapshot.source_path}  {state}")
        app.out.print(f"  {describe(s.snapshot.suspicious or {})}")


def register(app: typer.Typer) -> None:
    app.command("ack")(ack)
