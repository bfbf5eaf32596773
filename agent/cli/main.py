"""Root of the `agent` command: global options, command registration, error -> exit code mapping."""

from __future__ import annotations

import logging
import sys
from typing import Optional

import typer

from agent.cli import backup as backup_cmd
from agent.cli import check as check_cmd
from agent.cli import doctor as doctor_cmd
from agent.cli import forget as forget_cmd
from agent.cli import init as init_cmd
from agent.cli import key as key_cmd
from agent.cli import login as login_cmd
from agent.cli import prune as prune_cmd
from agent.cli import restore as restore_cmd
from agent.cli import snapshots as snapshots_cmd
from agent.cli import stats as stats_cmd
from agent.cli import unlock as unlock_cmd
from agent.cli.context import AppContext
from agent.config import Settings

app = typer.Typer(
    name="agent",
    help="Deduplicating, encrypted disk-image backup with point-in-time restore.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results."),
    debug: bool = typer.Option(False, "--debug", help="Log details and show tracebacks."),
) -> None:
    settings = Settings.resolve(repo=repo, passphrase_file=passphrase_file, passphrase_command=passphrase_command,
                                json=json_output, quiet=quiet, debug=debug)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = AppContext(settings)


for module in (init_cmd, backup_cmd, snapshots_cmd, restore_cmd, check_cmd, forget_cmd, prune_cmd, stats_cmd,
               unlock_cmd, doctor_cmd, login_cmd):
    module.register(app)
app.add_typer(key_cmd.app, name="key")


def run() -> None:
    """Console entry point: typed errors become one clear line and a documented exit code."""
    from agent.errors import AgentError
    from backends.errors import BackendError

    debug = "--debug" in sys.argv
    try:
        rc = app(standalone_mode=False)
    except AgentError as exc:
        _fail(str(exc), exc.hint, exc.exit_code, debug)
    except BackendError as exc:
        from agent.repo.repository import storage_error

        err = storage_error(exc, "storage error")
        _fail(str(err), err.hint, err.exit_code, debug)
    except KeyboardInterrupt:
        _fail("interrupted; the next run resumes from what was saved", "", 130, debug)
    except typer.Abort:
        _fail("aborted", "", 1, False)
    except Exception as exc:  # usage errors of the CLI framework, and genuine bugs
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        _fail(f"internal error: {exc.__class__.__name__}: {exc}", "please report it with the output of --debug", 1,
              debug)
    sys.exit(rc if isinstance(rc, int) else 0)


def _fail(message: str, hint: str, code: int, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.exit(code)
