"""`agent backup`: back up a disk, partition or image file."""

from __future__ import annotations

from typing import List, Optional

import typer

from agent.cli import units
from agent.cli.context import JSON_HELP, AppContext, app_context


def backup(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    source: str = typer.Argument(..., help="Block device (/dev/sda) or image file."),
    tag: List[str] = typer.Option([], "--tag", help="Tag for the snapshot (repeatable)."),
    host: Optional[str] = typer.Option(None, "--host", help="Record this host name instead of the machine's."),
    time: Optional[str] = typer.Option(None, "--time", help="Record the snapshot under this time (imports, tests)."),
    lock_wait: int = typer.Option(1800, "--lock-wait", help="Seconds to wait for a running prune to finish."),
) -> None:
    """Back up SOURCE; only chunks the repository lacks are uploaded."""
    from agent.backup import BackupOptions, run_backup
    from agent.timespec import parse_instant

    app: AppContext = app_context(ctx, json_output)
    opts = BackupOptions(tags=list(tag), host=host, time=parse_instant(time) if time else None, lock_wait=lock_wait)
    with app.repository() as repo, app.progress("backup") as listener:
        res = run_backup(repo, source, opts, listener)
    summary = {
        "snapshot_id": res.snapshot_id, "source": res.source, "source_bytes": res.source_bytes,
        "read_bytes": res.read_bytes, "zero_bytes": res.zero_bytes, "new_bytes": res.new_bytes,
        "stored_bytes": res.stored_bytes, "chunks": res.chunks, "new_chunks": res.new_chunks,
        "duration_s": res.duration_s, "recovered_packs": res.recovered_packs, "warnings": res.warnings,
    }
    if app.settings.json:
        app.emit_json(summary)
        return
    ratio = f"{res.dedup_ratio:.1f}x" if res.stored_bytes else "all known"
    app.out.print(f"snapshot {res.snapshot_id[:8]} saved: {res.source}")
    app.out.print(f"  size {units.size(res.source_bytes)}, read {units.size(res.read_bytes)} "
                  f"({units.size(res.zero_bytes)} zeros and holes skipped)")
    app.out.print(f"  new {units.size(res.new_bytes)} in {res.new_chunks} of {res.chunks} chunks, stored "
                  f"{units.size(res.stored_bytes)} after compression and encryption (dedup {ratio})")
    app.out.print(f"  {res.duration_s:.1f} s, {units.rate(res.source_bytes, res.duration_s)}")
    if res.recovered_packs:
        app.out.print(f"  reused {res.recovered_packs} pack(s) left by an interrupted run")


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
