"""`agent prune`: delete data no snapshot references, repack mostly-unused packs, remove leftovers of
interrupted writes and stale locks."""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import units
from agent.config.durations import UNITS_HELP

# typical object-store request prices (USD per 1000), for a rough estimate only
_PRICE_PUT, _PRICE_GET = 0.005, 0.0004


def prune(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    max_unused: str = typer.Option("5%", "--max-unused", help="Tolerate this share of unused space in packs "
                                   "before repacking."),
    max_repack: Optional[str] = typer.Option(None, "--max-repack", help="Repack at most this much live data per run "
                                             "(e.g. 2GiB). " + UNITS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Report what would be freed; change nothing."),
    lock_wait: int = typer.Option(1800, "--lock-wait", help="Seconds to wait for running backups to finish."),
    unfinished: bool = typer.Option(False, "--unfinished", help="Also drop the records of unfinished backup runs, "
                                    "so their uploads are deleted unless a snapshot uses them."),
    time: Optional[str] = typer.Option(None, "--time", help="Compare Object Lock retention with this time instead "
                                       "of the clock (tests, rehearsals)."),
) -> None:
    """Remove unreferenced data (after `agent forget`), leftovers of interrupted writes and stale locks."""
    from agent.config.settings import parse_percent
    from agent.config.sizes import parse_size
    from agent.config.times import parse_instant
    from agent.maintenance.prune import run_prune

    app: AppContext = app_context(ctx, json_output)
    unused = parse_percent(max_unused, "--max-unused")
    now = parse_instant(time) if time else None
    repack = parse_size(max_repack, what="--max-repack") if max_repack else None
    with app.repository() as repo, app.progress("prune") as listener:
        res = run_prune(repo, max_unused=unused, max_repack=repack,
                        dry_run=dry_run, lock_wait=lock_wait, unfinished=unfinished, now=now, listener=listener)
        ops = app.accounting.snapshot().operations if app.accounting else {}
    if app.settings.json:
        app.emit_json("prune", {**res.to_dict(), "requests": dict(ops)})
    else:
        print_prune(app, res)
        if ops:
            writes = ops.get("put", 0) + ops.get("delete", 0) + ops.get("list", 0)
            reads = ops.get("get", 0) + ops.get("head", 0)
            cost = writes / 1000 * _PRICE_PUT + reads / 1000 * _PRICE_GET
            app.details.print(f"requests: {writes} write/list/delete, {reads} read (about ${cost:.4f} at typical "
                              "object-store prices)")


def print_prune(app: AppContext, res) -> None:
    verb = "would free" if res.dry_run else "freed"
    app.out.print(f"{verb} {units.size(res.bytes_freed)} (repository {units.size(res.stored_before)} -> "
                  f"{units.size(res.stored_after)}): "
                  f"{res.packs_deleted} pack(s) deleted, {res.packs_repacked} repacked into {res.packs_written}, "
                  f"unused space {units.size(res.unused_before)} -> {units.size(res.unused_after)}")
    if res.leftovers or res.stale_locks:
        verb = "would remove" if res.dry_run else "removed"
        app.details.print(f"{verb} {res.leftovers} leftover(s) of interrupted writes "
                          f"({units.size(res.leftover_bytes)}) and {res.stale_locks} stale lock(s)")
    if res.held_packs or res.held_segments or res.held_bytes:
        app.details.print(f"waiting for Object Lock retention to lapse (the last on {res.held_until}): "
                          f"{res.held_packs} unused pack(s) and {units.size(res.held_bytes)} unused in packs still in "
                          f"use, {res.held_segments} replaced index segment(s); a prune after that date removes them")
    if res.runs_dropped:
        app.details.print(f"{'would drop' if res.dry_run else 'dropped'} {res.runs_dropped} record(s) of unfinished "
                          "backup runs: their uploads are no longer kept for a resume")


def register(app: typer.Typer) -> None:
    app.command("prune")(prune)
