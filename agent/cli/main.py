"""Root of the `agent` command: global options, command registration, error -> exit code mapping."""

from __future__ import annotations

import logging
import sys
from typing import Optional

import typer

from agent.cli import ack as ack_cmd
from agent.cli import backup as backup_cmd
from agent.cli import browse as browse_cmd
from agent.cli import check as check_cmd
from agent.cli import config as config_cmd
from agent.cli import copy as copy_cmd
from agent.cli import doctor as doctor_cmd
from agent.cli import forget as forget_cmd
from agent.cli import init as init_cmd
from agent.cli import key as key_cmd
from agent.cli import login as login_cmd
from agent.cli import mount as mount_cmd
from agent.cli import prune as prune_cmd
from agent.cli import repair as repair_cmd
from agent.cli import restore as restore_cmd
from agent.cli import retain as retain_cmd
from agent.cli import run as run_cmd
from agent.cli import schedule as schedule_cmd
from agent.cli import snapshots as snapshots_cmd
from agent.cli import stats as stats_cmd
from agent.cli import status as status_cmd
from agent.cli import unlock as unlock_cmd
from agent.cli import verify as verify_cmd
from agent.cli.context import AppContext
from agent.cli.group import RootGroup
from agent.config import env
from agent.config.settings import Settings

app = typer.Typer(
    name="agent",
    help="Deduplicating, encrypted disk-image backup with point-in-time restore.\n\nGlobal options may come before "
    "or after the command: `agent backup disk.img --repo /srv/backup`.",
    cls=RootGroup,
    no_args_is_help=True,
    invoke_without_command=True,  # for --version; without it and without a command, the help
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    repo: Optional[str] = typer.Option(None, "--repo", "-r", help="Repository location (path, file://, s3://, ...). "
                                       "Env: AGENT_REPO."),
    passphrase_file: Optional[str] = typer.Option(None, "--passphrase-file", help="Read the passphrase from this "
                                                  "file. Env: AGENT_PASSPHRASE_FILE."),
    passphrase_command: Optional[str] = typer.Option(None, "--passphrase-command", help="Run this command and read "
                                                     "the passphrase from its output. Env: AGENT_PASSPHRASE_COMMAND."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors, warnings and the result line."),
    debug: bool = typer.Option(False, "--debug", help="Log details and show tracebacks."),
    syslog: bool = typer.Option(False, "--syslog", help="Also log warnings and outcomes to syslog/journald."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Config file (TOML). Default: AGENT_CONFIG, "
                                         "~/.config/agent/agent.toml, /etc/agent/agent.toml, if present."),
    version: bool = typer.Option(False, "--version", help="Print the version and the repository format version "
                                 "this build writes (one JSON object with --json), and exit."),
) -> None:
    """Global options: settings, logging, and the config file's [env] for the command that follows."""
    if version:
        _print_version(json_output)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    file, path = _load_config_file(config)
    from agent.cli.redaction import install  # after the config's [env] is in the environment: redacted too

    install()
    settings = Settings.resolve(file, repo=repo, passphrase_file=passphrase_file,
                                passphrase_command=passphrase_command, json=json_output, quiet=quiet, debug=debug,
                                config_path=str(path) if path else None, file_named=bool(config))
    ctx.obj = AppContext(settings)
    if settings.repo_conflict:
        ctx.obj.warn_repo_conflict(*settings.repo_conflict)
    if syslog or (file is not None and file.log.syslog):
        import os

        from agent.cli.progress_view import syslog_logger

        ctx.obj.syslog = syslog_logger(ctx.obj.warn, os.environ.get(env.SYSLOG_SOCKET) or "/dev/log")


def _print_version(json_output: bool) -> None:
    """The package's own version (agent.__version__, which pyproject.toml reads too), so it holds under any
    distribution name and in a single-file build without package metadata."""
    import json
    import platform

    from agent import __version__
    from agent.repo.format import FORMAT_VERSION

    if json_output:
        typer.echo(json.dumps({"event": "version", "version": __version__, "format_version": FORMAT_VERSION,
                               "python": platform.python_version()}))
    else:
        typer.echo(f"agent {__version__} (repository format {FORMAT_VERSION}, Python {platform.python_version()})")


def _load_config_file(explicit: Optional[str]):
    """The config file's settings, or None. Only read when one exists, so plain use needs none."""
    import os
    from pathlib import Path

    path: Path | None
    if explicit:
        path = Path(explicit).expanduser()
    else:
        named = os.environ.get(env.CONFIG)
        path = Path(named).expanduser() if named else None
        if path is None:
            from agent.nightly.paths import existing_default_config

            path = existing_default_config()
    if path is None:
        return None, None
    from agent.nightly.configfile import load_config

    cfg = load_config(path)
    for key, value in cfg.env.items():  # backend SDK credentials; the real environment wins
        os.environ.setdefault(key, value)
    return cfg, path


for module in (init_cmd, backup_cmd, snapshots_cmd, restore_cmd, browse_cmd, check_cmd, forget_cmd, prune_cmd,
               retain_cmd, stats_cmd, unlock_cmd, doctor_cmd, login_cmd, run_cmd, mount_cmd, verify_cmd, status_cmd,
               copy_cmd, ack_cmd):
    module.register(app)
app.add_typer(key_cmd.app, name="key")
app.add_typer(repair_cmd.app, name="repair")
app.add_typer(config_cmd.app, name="config")
app.add_typer(schedule_cmd.app, name="schedule")


def run() -> None:
    """Console entry point: typed errors become one clear line and a documented exit code."""
    from agent.allocator import tune_allocator
    from agent.errors import AgentError, Interrupted

    tune_allocator()
    debug = "--debug" in sys.argv
    interrupted = Interrupted("interrupted; the next run resumes from what was saved")
    try:
        rc = app(standalone_mode=False)
    except AgentError as exc:
        _fail(str(exc), exc.hint, exc.exit_code, debug, error_kind(exc))
    except KeyboardInterrupt:  # before typer's own handler is in place
        _fail(str(interrupted), interrupted.hint, interrupted.exit_code, debug, "interrupted")
    except typer.Abort:
        _fail("aborted", "", 1, False, "aborted")
    except Exception as exc:  # noqa: BLE001 - a storage error that escaped translation, typer's own, or a bug
        from agent.repo.storage import as_agent_error

        translated = as_agent_error(exc)
        if translated is not None:
            _fail(str(translated), translated.hint, translated.exit_code, debug, error_kind(translated))
        exit_code = getattr(exc, "exit_code", None)
        if hasattr(exc, "show") and isinstance(exit_code, int):
            exc.show()
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            _json_error("usage_error", exit_code, message, "")
            sys.exit(exit_code)
        _fail(f"internal error: {exc.__class__.__name__}: {exc}", "please report it with the output of --debug", 1,
              debug, "internal")
    if rc == interrupted.exit_code:  # typer turns Ctrl-C into Exit(130), returned here without a word
        _fail(str(interrupted), interrupted.hint, interrupted.exit_code, False, "interrupted")
    sys.exit(rc if isinstance(rc, int) else 0)


def error_kind(exc: BaseException) -> str:
    """The error's class as a snake_case word for JSON (`WrongPassphrase` -> `wrong_passphrase`)."""
    import re

    name = "failed" if type(exc).__name__ == "AgentError" else type(exc).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _json_error(kind: str, code: int, message: str, hint: str) -> None:
    """With --json the error is also an event on stdout, so a script reading only stdout sees why.
    Not for exit codes 3-7 (docs/errors.md): they report a result, and the command's own event,
    already printed, is the last line (`status` exits 6 after its report)."""
    if "--json" in sys.argv[1:] and not 3 <= code <= 7:
        from agent.cli.context import write_event

        write_event("error", {"code": code, "kind": kind, "message": message, "hint": hint or None})


def _fail(message: str, hint: str, code: int, debug: bool, kind: str = "failed") -> None:
    from agent.cli.redaction import redact, secret_values  # an SDK's message may repeat a URL with its password

    secrets = secret_values()
    if debug:
        import traceback

        sys.stderr.write(redact(traceback.format_exc(), secrets))
    sys.stderr.write(f"error: {redact(message, secrets)}\n")
    if hint:
        sys.stderr.write(f"hint: {redact(hint, secrets)}\n")
    _json_error(kind, code, redact(message, secrets), redact(hint, secrets) if hint else hint)
    sys.exit(code)
