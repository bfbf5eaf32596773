"""Shared state of one CLI invocation: settings, consoles, and how to open the repository."""

from __future__ import annotations

import getpass
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from rich.console import Console

from agent.config import Settings, passphrase_from_settings
from agent.errors import UsageError
from agent.progress import Event, Listener, Warning


JSON_HELP = "Machine-readable output on stdout (same as the global --json)."


def app_context(ctx, json_output: bool = False) -> "AppContext":
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
    accounting: object | None = None  # backends.middleware.Accounting of this invocation's backend

    # ---- output -------------------------------------------------------------------------------
    def info(self, message: str) -> None:
        if not self.settings.quiet:
            self.err.print(message)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {message}")

    def emit_json(self, obj: Any) -> None:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
        sys.stdout.flush()

    @contextmanager
    def progress(self, label: str) -> Iterator[Listener]:
        """A listener that draws a progress bar on a terminal and passes warnings through."""
        show = self.err.is_terminal and not self.settings.quiet and not self.settings.json
        if not show:
            def plain(ev: Event) -> None:
                if isinstance(ev, Warning):
                    self.warn(ev.message)
            yield plain
            return
        from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn)

        with Progress("[bold]" + label, BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                      console=self.err, transient=True) as bar:
            task = bar.add_task(label, total=None)

            def listener(ev: Event) -> None:
                from agent.progress import Advanced, Started

                if isinstance(ev, Started):
                    bar.update(task, total=ev.total_bytes)
                elif isinstance(ev, Advanced):
                    bar.update(task, completed=ev.done_bytes)
                elif isinstance(ev, Warning):
                    self.warn(ev.message)
            yield listener

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

    def backend(self):
        from backends.middleware import Accounting, compose
        from backends.registry import open_backend

        self.accounting = Accounting()
        return compose(open_backend(self.settings.require_repo()), accounting=self.accounting)

    @contextmanager
    def repository(self) -> Iterator["Repository"]:  # noqa: F821 - imported lazily
        from agent.repo.repository import Repository

        backend = self.backend()
        repo = Repository.open(backend, self.passphrase())
        try:
            yield repo
        finally:
            repo.close()
