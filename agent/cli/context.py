"""Shared state of one CLI invocation: settings, consoles, and how to open the repository."""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, cast

from rich.console import Console

from agent.config import env
from agent.config.settings import Settings, passphrase_from_settings
from agent.errors import UsageError
from agent.progress import Listener, Warning

if TYPE_CHECKING:
    from agent.config.settings import OtherRepo
    from agent.nightly.configfile import Config
    from agent.repo.repository import Repository
    from agent.repo.storage import Accounting, Backend


JSON_HELP = "Machine-readable output on stdout (same as the global --json)."


def _json_default(value: Any) -> Any:
    from datetime import datetime

    from agent.config.stamps import rfc3339

    return rfc3339(value, fraction=True) if isinstance(value, datetime) else str(value)


_OFFSET_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d:\d\d$")


def _utc_times(value: Any) -> Any:
    """Times that records store with an offset (`+00:00`: run records, key files, damage records)
    as RFC 3339 UTC with `Z`, so every time in the output has the one format of docs/json.md."""
    if isinstance(value, str) and _OFFSET_TIME.match(value):
        from agent.config.stamps import rfc3339

        return rfc3339(value, fraction=True)
    if isinstance(value, dict):
        return {k: _utc_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utc_times(v) for v in value]
    return value


def write_event(event: str, obj: dict[str, Any]) -> None:
    """The only writer of --json lines: `event` first, datetimes as RFC 3339 UTC."""
    if "event" in obj:
        raise ValueError(f"the event {event!r} carries its own 'event' key")
    line = json.dumps({"event": event, **_utc_times(obj)}, default=_json_default)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def app_context(ctx, json_output: bool = False) -> AppContext:
    """The invocation's context; a command's own --json switches JSON output on too."""
    app: AppContext = ctx.obj
    if json_output:
        app.settings.json = True
    return app


@dataclass
class AppContext:
    settings: Settings
    # wide when piped, so tables in logs and mails do not wrap
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True,
                                                         width=None if sys.stdout.isatty() else 200))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))
    accounting: Accounting | None = None  # traffic of this invocation's storage (agent.repo.storage)
    syslog: logging.Logger | None = None  # set when the config asks for syslog (warnings, summaries)
    muted: Console = field(default_factory=lambda: Console(quiet=True))

    @property
    def details(self) -> Console:
        """stdout for the lines around a command's result line: silent with -q, which prints only errors
        and the result line (docs/configuration.md)."""
        return self.muted if self.settings.quiet else self.out

    @property
    def config_file(self) -> Config | None:
        """The loaded config file: Settings holds it untyped, as agent.config sits below agent.nightly."""
        return cast("Config | None", self.settings.file)

    def log_summary(self, message: str, *, error: bool = False) -> None:
        """A run's one-line outcome, for syslog/journald when configured."""
        if self.syslog is not None:
            (self.syslog.error if error else self.syslog.info)(message)

    # ---- output -------------------------------------------------------------------------------
    def info(self, message: str) -> None:
        if not self.settings.quiet:
            self.err.print(message)

    def warn(self, message: str) -> None:
        """On stderr always; with --json also a warning event on stdout."""
        if self.syslog is not None:
            self.syslog.warning(message)
        self.err.print(f"[yellow]warning:[/] {message}", markup=True)
        if self.settings.json:
            write_event("warning", {"message": message})

    def warn_repo_conflict(self, winner: str, from_env: str, from_file: str) -> None:
        """AGENT_REPO and the config file disagree: say which one is used (docs/configuration.md#precedence)."""
        from backends.registry import redact_url

        used, other = (from_file, from_env) if winner == "file" else (from_env, from_file)
        why = "--config wins over AGENT_REPO" if winner == "file" else "AGENT_REPO wins over a config file not " \
            "named with --config"
        self.warn(f"using the repository {redact_url(used)}, not {redact_url(other)} ({why})")

    def emit_json(self, event: str, obj: dict[str, Any] | None = None) -> None:
        """One JSON line on stdout, always an object whose first key is `event` (docs/json.md)."""
        write_event(event, obj or {})

    @contextmanager
    def progress(self, label: str) -> Iterator[Listener]:
        """Listener for an operation: a bar on a terminal, JSON lines with --json, periodic plain lines
        otherwise (silent with --quiet); warnings always pass through."""
        from agent.cli import progress_view as view

        try:
            interval = float(os.environ.get(env.PROGRESS_INTERVAL) or 0)
        except ValueError:
            raise UsageError("AGENT_PROGRESS_INTERVAL must be a number of seconds") from None
        if interval <= 0:
            config = self.config_file
            interval = config.log.progress_interval_s if config else 60.0
        if self.settings.json:
            yield view.json_lines(label, write_event, self.warn)
        elif self.err.is_terminal and not self.settings.quiet:
            with view.rich_bar(label, self.err, self.warn) as listener:
                yield listener
        elif self.settings.quiet:
            yield lambda ev: self.warn(ev.message) if isinstance(ev, Warning) else None
        else:
            yield view.plain_lines(label, self.info, self.warn, interval)

    def set_limits(self, upload: str | None, download: str | None) -> None:
        """A command's --limit-* flags win over the environment and the config file."""
        if upload:
            self.settings.limit_upload = upload
        if download:
            self.settings.limit_download = download

    @property
    def local_host(self) -> str:
        """This machine's name as its backups record it (the config's `host`, else the hostname): what
        `latest` and `--at` choose when a repository holds several machines."""
        import socket

        config = self.config_file
        return (config.host if config else None) or socket.gethostname()

    # ---- secrets and repository ------------------------------------------------------------------
    def passphrase(self, *, confirm: bool = False, prompt: str = "Repository passphrase") -> bytes:
        secret = passphrase_from_settings(self.settings)
        if secret is not None:
            return secret
        return self.prompt_secret(prompt, confirm=confirm)

    def prompt_secret(self, prompt: str, *, confirm: bool = False) -> bytes:
        if not sys.stdin.isatty():
            raise UsageError("no passphrase given and no terminal to ask on",
                             hint="set AGENT_PASSPHRASE_FILE, AGENT_PASSPHRASE_COMMAND or AGENT_PASSPHRASE")
        first = getpass.getpass(f"{prompt}: ")
        if not first:
            raise UsageError("an empty passphrase is not allowed")
        if confirm and getpass.getpass(f"{prompt} (again): ") != first:
            raise UsageError("the passphrases do not match")
        return first.encode()

    def backend(self) -> Backend:
        """The storage at --repo, with this invocation's limits and traffic accounting."""
        from agent.repo.storage import new_accounting, open_storage

        self.accounting = new_accounting()
        return open_storage(self.settings.require_repo(), limit_upload=self.settings.limit_upload,
                            limit_download=self.settings.limit_download, accounting=self.accounting)

    @contextmanager
    def repository(self) -> Iterator[Repository]:
        from agent.repo.keyring import unlock

        with naming_repository(self.settings.require_repo()):
            backend = self.backend()
            keys = unlock(backend, self.passphrase())  # Argon2id before the engine loads (agent.repo.keyring)
        from agent.repo.repository import Repository

        for key_id in keys.damaged:  # another key opened; the damaged one still needs attention
            self.warn(f"key file {key_id[:8]} is damaged (the integrity digest does not match): its passphrase no "
                      "longer opens the repository; `agent check` lists every damaged key file")
        with naming_repository(self.settings.require_repo()):
            repo = Repository.unlocked(backend, keys)
        try:
            yield repo
        finally:
            repo.close()

    def other_backend(self, other: OtherRepo, *, limit_upload: str | None = None,
                      limit_download: str | None = None) -> Backend:
        from agent.repo.storage import new_accounting, open_storage

        return open_storage(other.url, limit_upload=limit_upload, limit_download=limit_download,
                            accounting=new_accounting())

    def other_passphrase(self, other: OtherRepo, *, confirm: bool = False) -> bytes:
        secret = other.passphrase()
        if secret is not None:
            return secret
        if not sys.stdin.isatty():
            prefix = "AGENT_TO" if other.what.startswith("target") else "AGENT_FROM"
            raise UsageError(f"no {other.what} given and no terminal to ask on",
                             hint=f"set {prefix}_PASSPHRASE_FILE, {prefix}_PASSPHRASE_COMMAND or {prefix}_PASSPHRASE")
        return self.prompt_secret(other.what[0].upper() + other.what[1:], confirm=confirm)

    @contextmanager
    def other_repository(self, other: OtherRepo, *, limit_upload: str | None = None,
                         limit_download: str | None = None) -> Iterator[Repository]:
        """The second repository of `copy` (target) or `init --from-repo` (source), with its own passphrase."""
        from agent.errors import WrongPassphrase
        from agent.repo.keyring import unlock

        with naming_repository(other.url):
            backend = self.other_backend(other, limit_upload=limit_upload, limit_download=limit_download)
            try:
                keys = unlock(backend, self.other_passphrase(other))
            except WrongPassphrase as exc:
                backend.close()
                flag = "--to-passphrase-file" if other.what.startswith("target") else "--from-passphrase-file"
                raise WrongPassphrase(f"{other.what}: {exc}", hint=f"check {flag} and its AGENT_* variables "
                                      "(docs/copies.md); each repository has its own passphrase") from None
            except BaseException:
                backend.close()
                raise
        from agent.repo.repository import Repository

        with naming_repository(other.url):
            repo = Repository.unlocked(backend, keys)
        try:
            yield repo
        finally:
            repo.close()


@contextmanager
def naming_repository(url: str) -> Iterator[None]:
    """Errors opening a repository (none there, wrong passphrase, newer format, unreachable storage)
    name it, credentials redacted: with several configuration sources, which repository matters."""
    from agent.errors import AgentError, RepositoryNotFound, StorageError, UnsupportedFormat, WrongPassphrase
    from agent.repo.storage import as_agent_error
    from backends.registry import redact_url

    try:
        yield
    except Exception as exc:
        err = exc if isinstance(exc, AgentError) else as_agent_error(exc)
        if not isinstance(err, (RepositoryNotFound, StorageError, UnsupportedFormat, WrongPassphrase)):
            raise
        shown = redact_url(url)
        if shown.split("?", 1)[0].rstrip("/") in str(err):  # the storage layer's message names it already
            raise err from None
        raise type(err)(f"repository {shown}: {err}", hint=err.hint) from None
