"""`agent schedule install|remove|status`: run `agent run` every night from systemd or cron.

AGENT_SCHEDULE_ROOT (default "/") prefixes every path written or read, so tests (and image builds)
can install into a directory tree instead of the live system.
"""

from __future__ import annotations

from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import env, stamps

app = typer.Typer(help="Run `agent run` every night (systemd timer, or cron where systemd is not running).",
                  no_args_is_help=True)


def _locations(user: bool):
    import os
    from pathlib import Path

    from agent.nightly.schedule import Locations

    return Locations(root=Path(os.environ.get(env.SCHEDULE_ROOT) or "/"), user=user)


def _local(dt) -> str:
    return stamps.human(dt)


def _delay_text(seconds: int) -> str:
    if not seconds:
        return ""
    amount = (f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min" if seconds % 60 == 0
              else f"{seconds} s")
    return f", up to {amount} later at random"


@app.command("install")
def install(
    ctx: typer.Context,
    at: str = typer.Option("01:00", "--at", help="Local time of day to start, HH:MM."),
    randomized_delay: str = typer.Option("15m", "--randomized-delay", help="Start up to this much later at "
                                         "random (15m, 1h, 0 = never); cron gets a fixed per-host offset instead."),
    config: Optional[str] = typer.Option(None, "--config", help="Config file the nightly run uses. Default: the "
                                         "global --config / AGENT_CONFIG, else the default location."),
    user: bool = typer.Option(False, "--user", help="A systemd user timer (~/.config/systemd/user), not a "
                              "system one."),
    cron: bool = typer.Option(False, "--cron", help="Use /etc/cron.d even where systemd runs."),
    systemd: bool = typer.Option(False, "--systemd", help="Use a systemd timer even where systemd is not running "
                                 "now (e.g. in an image being built): enabled for the next boot."),
    environment_file: Optional[str] = typer.Option(None, "--environment-file", help="Variables to load before the "
                                                   "run (KEY=value lines), e.g. cloud credentials; keep it chmod 600."),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Install (or update) the nightly schedule; running it again is safe."""
    import os
    import socket
    from pathlib import Path

    from agent.errors import AgentError, UsageError
    from agent.nightly import schedule as sch

    a: AppContext = app_context(ctx, json_output)
    if cron and systemd:
        raise UsageError("--cron and --systemd exclude each other")
    at = "{:02d}:{:02d}".format(*sch.parse_at(at))
    config_path = Path(config or a.settings.config_path or _default_config()).expanduser().absolute()
    cfg = None
    if not config_path.exists():
        a.warn(f"the config file {config_path} does not exist yet; nightly runs fail until it does")
    elif config:  # catch a typo now rather than at 01:00 (a global/default config was loaded already)
        from agent.nightly.configfile import load_config

        try:
            cfg = load_config(config_path)
        except AgentError as exc:
            a.warn(f"{exc}; nightly runs fail until it is fixed")
    else:
        cfg = a.config_file
    env_file = str(Path(environment_file).expanduser().absolute()) if environment_file else None
    s = sch.Schedule(config_path=str(config_path), at=at, randomized_delay_s=sch.parse_delay(randomized_delay),
                     environment_file=env_file, **_unit_paths(cfg))
    loc = _locations(user)
    try:
        done = sch.install(s, loc, "cron" if cron else "systemd" if systemd else "auto")
    except PermissionError as exc:
        raise UsageError(f"cannot write in {Path(exc.filename).parent}: permission denied",
                         hint="run it as root (sudo), or use --user for a timer of your own") from None
    if a.settings.json:
        a.emit_json("schedule_install", {**done, "config": str(config_path), "at": at,
                                         "randomized_delay_s": s.randomized_delay_s})
        return
    for path in done["replaced"]:
        a.info(f"removed {path} (the other scheduler's entry: never both)")
    if done["scheduler"] == "cron":
        h, m = sch.cron_time(s, socket.gethostname())
        shifted = (h, m) != sch.parse_at(at)
        when = f"every day at {h:02d}:{m:02d}" + (f" ({at} plus this host's fixed offset)" if shifted else "")
    else:
        when = f"every day at {at}{_delay_text(s.randomized_delay_s)}"
    verb = "installed" if done["changed"] else "already installed, unchanged:"
    a.out.print(f"{verb} {done['scheduler']} schedule {when}: {', '.join(done['files'])}")
    a.out.print(f"runs: {' '.join(sch.run_argv(s, quiet=done['scheduler'] == 'cron'))}")
    for note in done["notes"]:
        a.info(note)
    if os.geteuid() == 0 and user:
        a.warn("--user as root installs a timer in root's own user manager; a system timer is usual")


def _unit_paths(cfg) -> dict:
    """What the hardened system unit must let through: the passphrase file (LoadCredential=) and the local
    repositories and metrics files the run writes (ReadWritePaths=)."""
    from pathlib import Path

    if cfg is None:
        return {}
    locations = [cfg.repository, *(c.repository for c in cfg.copies)]
    writable = [str(Path(u).expanduser().absolute()) for u in locations if u and "://" not in u]
    writable += [u.split("://", 1)[1].split("?", 1)[0] for u in locations if u and u.startswith("file://")]
    metrics = (cfg.metrics.textfile, cfg.metrics.status_textfile)
    writable += [str(Path(f).expanduser().absolute().parent) for f in metrics if f]
    passphrase = str(Path(cfg.passphrase_file).expanduser().absolute()) if cfg.passphrase_file else None
    return {"passphrase_file": passphrase, "writable": tuple(dict.fromkeys(writable))}


def _default_config() -> str:
    from agent.nightly.paths import config_candidates, existing_default_config

    return str(existing_default_config() or config_candidates()[0])


@app.command("remove")
def remove(ctx: typer.Context,
           user: bool = typer.Option(False, "--user", help="Remove the systemd user timer instead."),
           json_output: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Disable and delete the nightly schedule (a backup running right now is left to finish)."""
    from agent.errors import UsageError
    from agent.nightly import schedule as sch

    a: AppContext = app_context(ctx, json_output)
    try:
        removed = sch.remove(_locations(user))
    except PermissionError as exc:
        raise UsageError(f"cannot remove {exc.filename}: permission denied", hint="run it as root (sudo)") from None
    if a.settings.json:
        a.emit_json("schedule_remove", {"removed": removed})
    elif removed:
        a.out.print("removed " + ", ".join(removed))
    else:
        a.out.print("no nightly schedule was installed")


@app.command("status")
def status(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
           user: bool = typer.Option(False, "--user", help="Look at the systemd user timer instead.")) -> None:
    """Is a schedule installed, when is the next run, and how did the last one go."""
    from agent.errors import AgentError
    from agent.nightly import schedule as sch
    from agent.nightly.state import default_state_path, load_state

    a: AppContext = app_context(ctx, json_output)
    loc = _locations(user)
    info = sch.installed(loc)
    running = loc.scheduler_running(info["scheduler"])
    nxt = sch.next_run(loc, info) if running else None
    state_path = default_state_path()
    try:
        state, state_error = load_state(state_path), None
    except AgentError as exc:
        state, state_error = None, str(exc)
    if a.settings.json:
        a.emit_json("schedule_status", {"installed": info["scheduler"] is not None, **info,
                     "scheduler_running": running, "next_run": stamps.rfc3339(nxt), "state_file": str(state_path),
                     "last_run": state.to_dict() if state else None, "state_error": state_error})
        return
    p = a.out.print
    if info["scheduler"]:
        p(f"installed:    yes, {info['scheduler']} ({', '.join(info['files'])})")
        p(f"schedule:     every day at {info['at'] or '?'}{_delay_text(info['randomized_delay_s'])}")
        p(f"next run:     {_local(nxt)}" if running else "next run:     none: " + (
            "no cron daemon is running" if info["scheduler"] == "cron" else "systemd is not running (PID 1)"))
    else:
        p("installed:    no (install with `agent schedule install`)")
    if state_error:
        p(f"last run:     unknown: {state_error}")
    elif state is None or state.last_started is None:
        p(f"last run:     none recorded ({state_path})")
    else:
        if state.last_finished is None or state.last_finished < state.last_started:
            p(f"last run:     started {_local(state.last_started)}, not finished (running now, or interrupted)")
        if state.last_finished is not None and state.last_status:
            label = "last result:  " if state.last_finished >= state.last_started else "before that:  "
            p(f"{label}{state.last_status} (exit {state.last_exit_code}), finished "
              f"{_local(state.last_finished)}: {state.last_summary}")
        p(f"last success: {_local(state.last_success)}")
        p(f"state file:   {state_path}")
