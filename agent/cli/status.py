"""`agent status` (every host and source in the repository, flagged when stale or failed) and
`agent serve` (the same as a live web page)."""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import stamps, units
from agent.config.durations import UNITS_HELP
from agent.errors import AgentError

STALE_HELP = ("Flag a source whose newest snapshot is older than this (36h, 2d); overrides status.stale_after. "
              + UNITS_HELP)


class NeedsAttention(AgentError):
    """Not a failure of the command: the report is complete, and it found sources to look after."""

    exit_code = 6
    hint = "see the flags column; `agent snapshots --all --host HOST` lists a host's runs"


def status(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    html: Optional[str] = typer.Option(None, "--html", help="Also write the report as one self-contained web "
                                       "page to this file."),
    stale_after: Optional[str] = typer.Option(None, "--stale-after", help=STALE_HELP),
    prometheus: Optional[str] = typer.Option(None, "--prometheus", help="Also write per-host staleness for "
                                             "node_exporter's textfile collector to this file; overrides "
                                             "metrics.status_textfile."),
) -> None:
    """Every host and source that backed up into the repository: last success, last failed run, trend.

    Reads only metadata. Exit status 6 when a source is stale, its latest run failed or was
    incomplete, it never succeeded or a snapshot of it has lost ranges, or when `agent check` recorded
    damaged packs; 0 when all are fine.
    """
    app: AppContext = app_context(ctx, json_output)
    with app.repository() as repo:
        fleet = _read(app, repo, stale_after)
    data = fleet.to_dict()
    if html:
        _write_html(html, data)
    textfile = prometheus or (app.config_file.metrics.status_textfile if app.config_file else None)
    if textfile:
        from agent.nightly.metrics import write_fleet_textfile

        try:
            write_fleet_textfile(textfile, data)
        except OSError as exc:
            app.warn(f"metrics file {textfile} not written: {exc.strerror or exc}")
    for d in fleet.damaged:
        app.warn(f"{d}; `agent check` reports it")
    damaged_packs = bool(fleet.check and fleet.check["packs"])
    if damaged_packs:  # before the result: with --json, warning events come before the result line
        app.warn(f"`agent check` recorded {fleet.check['packs']} damaged pack(s) ({fleet.check['time']}): see "
                 "`agent check` and `agent repair packs`")
    if app.settings.json:
        app.emit_json("status", data)
    else:
        _print(app, data)
    flagged = fleet.flagged
    if damaged_packs:
        if not flagged:
            raise NeedsAttention(f"the repository holds {fleet.check['packs']} pack(s) `agent check` found damaged")
    if flagged:
        names = ", ".join(f"{s.host}:{s.source} ({', '.join(s.flags)})" for s in flagged[:5])
        more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
        raise NeedsAttention(f"{len(flagged)} of {len(fleet.sources)} source(s) need attention: {names}{more}")


def _read(app: AppContext, repo, stale_after: Optional[str]):
    from agent.maintenance.fleet import StalePolicy, read_fleet
    from agent.maintenance.retention import parse_window
    from agent.nightly.configfile import StatusConfig
    from backends.registry import redact_url

    cfg = app.config_file
    policy = (cfg.status if cfg else StatusConfig()).policy()
    if stale_after:
        policy = StalePolicy(parse_window(stale_after, "--stale-after"), policy.overrides)
    return read_fleet(repo, policy=policy, repository=redact_url(app.settings.require_repo()),
                      verified=_local_verifies(app))


def _local_verifies(app: AppContext):
    """When this machine's sources last verified clean, from its `agent run` state file (the repository
    records no verify): (host, source path) -> time, for the sources of the config file."""
    import socket

    from agent.errors import AgentError
    from agent.nightly.state import default_state_path, load_state

    cfg = app.config_file
    known: dict[tuple[str, str], object] = {}
    if cfg is not None:
        try:
            state = load_state(default_state_path())
        except AgentError:
            state = None
        host = cfg.host or socket.gethostname()
        for src in cfg.sources:
            if state is not None and src.name in state.last_verified:
                known[(host, src.path)] = state.last_verified[src.name]
    return lambda h, s: known.get((h, s))


def _write_html(path: str, data: dict) -> None:
    import os
    import tempfile
    from pathlib import Path

    from agent.errors import UsageError
    from agent.nightly.webpage import render_page

    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_page(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"cannot write the page {path}: {exc.strerror or exc}") from None


def _print(app: AppContext, data: dict) -> None:

    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("host", "source", "last success", "age", "size", "new data", "trend", "last failed run", "flags"):
        table.add_column(col, justify="right" if col in ("age", "size", "new data", "trend") else "left")
    for s in data["sources"]:
        last, problem = s["last_success"], s["last_problem"]
        when = stamps.human(last["time"]) if last else "never"
        table.add_row(s["host"], s["source"], when, units.duration(s["age_s"]) if s["age_s"] is not None else "",
                      units.size(last["size"]) if last else "", units.size(last["new_bytes"]) if last else "",
                      f"{s['new_bytes_trend']:.2f}x" if s["new_bytes_trend"] is not None else "",
                      f"{problem['status']}: {problem['reason']}" if problem else "",
                      ("[red]" + ", ".join(s["flags"]) + "[/]") if s["flags"] else "[green]ok[/]")
    app.out.print(table)
    for lk in data["locks"]:
        app.out.print(f"lock: {'exclusive' if lk['exclusive'] else 'shared'} {lk['command']} by {lk['host']} "
                      f"pid {lk['pid']} since {lk['time']}{' (stale)' if lk['stale'] else ''}", markup=False)
    app.info(f"{data['hosts']} host(s), {len(data['sources'])} source(s), {data['snapshots']} snapshot(s), "
             f"{units.size(data['repository_bytes'])} stored; {data['flagged']} flagged")


def serve(
    ctx: typer.Context,
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address to listen on. Anything but loopback needs "
                             "--auth-file."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port (0: any free one, printed)."),
    auth_file: Optional[str] = typer.Option(None, "--auth-file", help="File with one line user:password; "
                                            "the page then asks for basic auth."),
    tls_cert: Optional[str] = typer.Option(None, "--tls-cert", help="Serve HTTPS with this certificate (PEM)."),
    tls_key: Optional[str] = typer.Option(None, "--tls-key", help="The certificate's private key (PEM)."),
    refresh: int = typer.Option(300, "--refresh", min=5, help="Seconds between rebuilds of the status "
                                "(and the page's reload)."),
    stale_after: Optional[str] = typer.Option(None, "--stale-after", help=STALE_HELP),
) -> None:
    """Serve the `status --html` page live (read-only; never writes to the repository)."""
    from agent.config.settings import read_secret_file
    from agent.errors import UsageError
    from agent.nightly.webserver import ServeOptions, check_options, make_server

    app: AppContext = app_context(ctx)
    credentials = None
    if auth_file:
        user, sep, password = read_secret_file(auth_file, "auth").decode(errors="replace").partition(":")
        if not sep or not user or not password:
            raise UsageError(f"the auth file {auth_file} must hold one line user:password")
        credentials = (user, password)
    opts = ServeOptions(bind=bind, port=port, refresh_s=refresh, credentials=credentials, tls_cert=tls_cert,
                        tls_key=tls_key)
    check_options(opts)  # before the passphrase is asked for
    with app.repository() as repo:
        import threading

        lock = threading.Lock()

        def build() -> dict:
            with lock:
                return _read(app, repo, stale_after).to_dict()

        try:
            server = make_server(opts, build, on_error=app.warn)
        except OSError as exc:  # address in use, unreadable certificate, ...
            raise UsageError(f"cannot serve on {bind}:{port}: {exc.strerror or exc}") from None
        scheme = "https" if tls_cert else "http"
        host, actual = str(server.server_address[0]), server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {scheme}://{shown}:{actual}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("serve")(serve)
