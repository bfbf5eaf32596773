"""`agent repair index|packs|snapshots`: bring a damaged repository back to a clean `check`."""

from __future__ import annotations

from typing import List, Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context

app = typer.Typer(help="Repair a damaged repository (docs/damage.md walks through each case).", no_args_is_help=True)

_DRY_RUN_HELP = "Report what would be done; change nothing."
_LOCK_WAIT_HELP = "Seconds to wait for running backups to finish."


def _report(app_ctx: AppContext, what: str, rep) -> None:
    if app_ctx.settings.json:
        app_ctx.emit_json(f"repair_{what}", rep.to_dict())
        return
    prefix = "dry run: " if rep.dry_run else ""
    for line in rep.actions:
        app_ctx.out.print(f"{prefix}{line}")
    for w in rep.warnings:
        app_ctx.warn(w)
    if not rep.actions:
        app_ctx.out.print("nothing to repair")


@app.command("index")
def index(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
          read_all_packs: bool = typer.Option(False, "--read-all-packs", help="Read every pack's header, not only "
                                              "those the readable index does not describe."),
          dry_run: bool = typer.Option(False, "--dry-run", "-n", help=_DRY_RUN_HELP),
          lock_wait: int = typer.Option(1800, "--lock-wait", help=_LOCK_WAIT_HELP)) -> None:
    """Rebuild the index from the packs: drop damaged segments, index unindexed packs, forget missing ones."""
    from agent.maintenance.repair_index import run_repair_index

    a: AppContext = app_context(ctx, json_output)
    with a.repository() as repo, a.progress("repair") as listener:
        rep = run_repair_index(repo, read_all_packs=read_all_packs, dry_run=dry_run, lock_wait=lock_wait,
                               listener=listener)
    _report(a, "index", rep)


@app.command("packs")
def packs(ctx: typer.Context, pack_ids: Optional[List[str]] = typer.Argument(None, help="Also these packs (id or "
                                                                               "prefix, as `agent check` prints)."),
          json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
          dry_run: bool = typer.Option(False, "--dry-run", "-n", help=_DRY_RUN_HELP),
          lock_wait: int = typer.Option(1800, "--lock-wait", help=_LOCK_WAIT_HELP)) -> None:
    """Salvage the readable blobs of damaged or missing packs (found by `agent check`) into new packs."""
    from agent.maintenance.repair_packs import run_repair_packs

    a: AppContext = app_context(ctx, json_output)
    with a.repository() as repo, a.progress("repair") as listener:
        rep = run_repair_packs(repo, pack_ids or [], dry_run=dry_run, lock_wait=lock_wait, listener=listener)
    _report(a, "packs", rep)


@app.command("snapshots")
def snapshots(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
              zero_lost: bool = typer.Option(False, "--zero-lost", help="Replace each damaged snapshot by a repaired "
                                             "one whose lost ranges read as zeros (default: keep it, marked)."),
              dry_run: bool = typer.Option(False, "--dry-run", "-n", help=_DRY_RUN_HELP),
              lock_wait: int = typer.Option(1800, "--lock-wait", help=_LOCK_WAIT_HELP)) -> None:
    """Mark (or with --zero-lost, repair) snapshots whose chunks are lost; remove unreadable manifests."""
    from agent.maintenance.repair_snapshots import run_repair_snapshots

    a: AppContext = app_context(ctx, json_output)
    with a.repository() as repo, a.progress("repair") as listener:
        rep = run_repair_snapshots(repo, zero_lost=zero_lost, dry_run=dry_run, lock_wait=lock_wait, listener=listener)
    _report(a, "snapshots", rep)
