"""`agent doctor`: check a storage target before it is trusted with backups (agent.repo.probe
does the checks; this module renders them and picks the exit status)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import units

if TYPE_CHECKING:
    from agent.repo.probe import Report



def _render(app: AppContext, report: Report) -> None:
    from rich.markup import escape
    from rich.table import Table

    caps = report.capabilities or {}
    app.out.print(f"target        {escape(report.location or report.url)}")
    if caps:
        flags = ", ".join(f"{'' if caps[k] else 'no '}{k.replace('_', ' ')}" for k in
                          ("range_reads", "conditional_put", "atomic_overwrite", "object_lock"))
        sizes = f"{units.size(caps['preferred_object_size'])} preferred, {units.size(caps['max_object_size'])} max"
        app.out.print(f"capabilities  {flags}; up to {caps['max_connections']} connections, objects {sizes}")
    table = Table(box=None, header_style="bold")
    for col in ("check", "result", "time", "detail"):
        table.add_column(col, justify="right" if col == "time" else "left")
    style = {"ok": "green", "failed": "bold red", "skipped": "dim"}
    for c in report.checks:
        ms = c.seconds * 1000
        took = "" if c.status == "skipped" else f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", took, escape(c.detail))
    app.out.print(table)
    if report.failed is None:
        app.out.print("all checks passed")


def doctor(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    size_mib: int = typer.Option(4, "--size", help="MiB to upload and download for the throughput check.",
                                 min=1, max=1024),
) -> None:
    """Check the storage at --repo / AGENT_REPO: reach, credentials, contract, latency, throughput.

    Uses only its own probe objects under doctor/ and needs no passphrase. Exit 0 when every
    check passes, 17 otherwise.
    """
    from agent.repo.probe import probe_storage

    app: AppContext = app_context(ctx, json_output)
    report = probe_storage(app.settings.require_repo(), size_mib << 20)
    if app.settings.json:
        app.emit_json("doctor", report.to_dict())
    else:
        _render(app, report)
    failed = report.failed
    if failed is not None:  # the report first, then the error line (and with --json its error event)
        from agent.errors import StorageError

        where = report.location or report.url
        raise StorageError(f"check '{failed.name}' failed on {where}: {failed.detail}", hint=failed.hint)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
