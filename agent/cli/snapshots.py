"""`agent snapshots`: list snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import List, Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import stamps, units

CHANGED = "changed during backup"  # the image was written while it was read (may be inconsistent)


def reading_note(reading: dict | None) -> str:
    """How a snapshot was read, in a word or two: "used blocks", "all blocks", "p2,3 only", "unchanged"."""
    if not reading:
        return "all blocks"
    if reading.get("unchanged_from"):
        return "unchanged"
    if reading.get("not_backed_up"):
        kept = [str(p.get("number")) for p in reading.get("partitions", []) if p.get("read") != "skipped"]
        return f"p{','.join(kept)} only"
    return "used blocks" if reading.get("mode") == "used" else "all blocks"


def suspicion_notes(snaps, repo) -> dict[str, str]:
    """snapshot id -> "SUSPICIOUS ..." or "kept: before suspicious ...": what `agent ack` is about."""
    from agent.maintenance.protection import acknowledged_ids, suspects

    out: dict[str, str] = {}
    for sus in suspects(snaps, acknowledged_ids(repo) if any(s.suspicious for s in snaps) else set()):
        short = sus.snapshot.id[:8]
        if sus.acknowledged:
            out[sus.snapshot.id] = "suspicious, acknowledged"
            continue
        out[sus.snapshot.id] = f"SUSPICIOUS, not acknowledged (agent ack {short})"
        if sus.before is not None:
            out.setdefault(sus.before.id, f"kept: last before suspicious {short}")
    return out


def snapshots(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    host: Optional[str] = typer.Option(None, "--host", help="Only this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Only this source path."),
    tag: List[str] = typer.Option([], "--tag", help="Only snapshots with this tag (repeatable: all must match)."),
    all_runs: bool = typer.Option(False, "--all", "-a", help="Also list runs that ended without a snapshot "
                                  "(incomplete or failed; not restorable)."),
) -> None:
    """List snapshots: id, time, host, source, size, new data, tags, and what was read."""
    from rich.table import Table

    from agent.repo.snapshots import filter_snapshots

    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        damaged_snaps: list[tuple[str, str]] = []
        snaps = filter_snapshots(repo.list_snapshots(damaged_snaps), host=host, source=source, tags=list(tag))
        damaged: list[str] = []
        runs = [(name, r) for name, r in repo.list_runs(damaged) if (host is None or r.host == host)
                and (source is None or r.source == source)] if all_runs else []
        notes = suspicion_notes(snaps, repo)
    for name, problem in damaged_snaps:
        app.warn(f"snapshot {name[:8]} is not listed: {problem}; `agent check` reports it")
    for name in damaged:
        app.warn(f"run record {name[:8]} is damaged and not listed; `agent prune` removes it")
    if app.settings.json:
        found = [s.summary() | {"note": notes.get(s.id)} | ({"status": "complete"} if all_runs else {})
                 for s in snaps]
        app.emit_json("snapshots", {"snapshots": found + [{**r.summary(), "id": name, "short_id": name[:8]}
                                                         for name, r in runs]})
        return
    rows = [(s.time, s.id, s.host, s.source_path, s.size, s.stats.get("stored_bytes"), ",".join(s.tags),
             reading_note(s.reading), "complete",
             "; ".join(n for n in (CHANGED if s.changed_during_backup else "", notes.get(s.id, "")) if n))
            for s in snaps]
    rows += [(datetime.fromisoformat(r.started), name, r.host, r.source, r.source_bytes, r.uploaded_bytes, "", "",
              f"{r.status}: {r.reason}", "") for name, r in runs]
    with_notes = any(row[-1] for row in rows)  # the column only when a snapshot needs it
    table = Table(box=None, header_style="bold")
    for col in (("id", "time", "host", "source", "size", "new data", "tags", "read")
                + (("status",) if all_runs else ()) + (("note",) if with_notes else ())):
        table.add_column(col, justify="right" if col in ("size", "new data") else "left")
    for when, ident, h, src, size, new, tags, read, status, note in sorted(rows, key=lambda row: row[0]):
        table.add_row(ident[:8], stamps.human(when), h, src, units.size(size),
                      units.size(new), tags, read, *((status,) if all_runs else ()), *((note,) if with_notes else ()))
    app.out.print(table)
    app.info(f"{len(snaps)} snapshot(s)" + (f", {len(runs)} run(s) without a snapshot (not restorable)"
                                            if runs else ""))


def register(app: typer.Typer) -> None:
    app.command("snapshots")(snapshots)
