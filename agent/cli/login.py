"""`agent login gdrive|dropbox|onedrive`: obtain and store a refresh token (file mode 0600)."""

from __future__ import annotations

import enum
import os
from typing import Optional

import typer

from agent.cli.context import AppContext, app_context
from agent.config import env


class Service(str, enum.Enum):
    """The services `agent login` knows; backends/registry.py maps each to its auth module and extra."""

    gdrive = "gdrive"
    dropbox = "dropbox"
    onedrive = "onedrive"


def _need(value: Optional[str], flag: str, env: str, service: str) -> str:
    from agent.errors import UsageError

    value = value or os.environ.get(env)
    if not value:
        raise UsageError(f"{flag} (or {env}) is needed to log in to {service}",
                         hint="see docs/backends.md for how to create it")
    return value


def _auth_module(service: Service):
    """The service's auth module from the backend registry (imported only now, it needs the SDK)."""
    from agent.errors import UsageError
    from backends.registry import BackendUnavailable, login_module

    try:
        return login_module(service.value)
    except BackendUnavailable as exc:
        if exc.package is None:
            raise UsageError(str(exc)) from None
        raise UsageError(f"logging in needs the Python package {exc.package!r}", hint=exc.install) from None


def login(
    ctx: typer.Context,
    service: Service = typer.Argument(..., help="The service to log in to."),
    client_secrets: Optional[str] = typer.Option(None, "--client-secrets", help="gdrive: the Desktop OAuth client "
                                                 "JSON (env AGENT_GDRIVE_CLIENT_SECRETS)."),
    paste: bool = typer.Option(False, "--paste", help="gdrive: paste the redirect address instead of listening on "
                               "loopback (for machines without a browser)."),
    port: int = typer.Option(0, "--port", help="gdrive: fixed loopback port (for `ssh -L`)."),
    scope: str = typer.Option("drive.file", "--scope", help="gdrive: drive.file (default, least privilege) or drive."),
    app_key: Optional[str] = typer.Option(None, "--app-key", help="dropbox: the app key (env AGENT_DROPBOX_APP_KEY)."),
    client_id: Optional[str] = typer.Option(None, "--client-id", help="onedrive: the application (client) id "
                                            "(env AGENT_ONEDRIVE_CLIENT_ID)."),
    whole_drive: bool = typer.Option(False, "--whole-drive", help="onedrive: access the whole drive instead of the "
                                     "app folder."),
) -> None:
    """Log in to a cloud drive and save a refresh token for later runs (no browser needed on this machine)."""
    app: AppContext = app_context(ctx)
    auth = _auth_module(service)
    if service is Service.gdrive:
        secrets_file = _need(client_secrets, "--client-secrets", env.GDRIVE_CLIENT_SECRETS, "Google Drive")
        path = auth.login(None, secrets_file, scope=scope, port=port,
                          on_url=lambda url: app.out.print(f"Open this address in a browser and allow access:\n{url}"),
                          paste=(lambda: typer.prompt("Paste the address your browser was sent to")) if paste else None)
    elif service is Service.dropbox:
        path = auth.default_token_path()

        def prompt(url: str) -> str:
            app.out.print(f"1. Open this address in any browser and allow access:\n   {url}")
            return typer.prompt("2. Paste the code Dropbox shows")

        auth.login(path, _need(app_key, "--app-key", env.DROPBOX_APP_KEY, "Dropbox"), prompt)
    else:
        path = auth.default_token_path()
        auth.login(path, auth.client_id_from(client_id), show=app.out.print,
                   scopes=auth.WHOLE_DRIVE_SCOPES if whole_drive else auth.APP_FOLDER_SCOPES)
    app.out.print(f"saved the {service.value} login to {path} (mode 0600)")


def register(app: typer.Typer) -> None:
    app.command("login")(login)
