"""`agent init`: create an encrypted repository."""

from __future__ import annotations

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context


def init(ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
         pack_size_mib: int = typer.Option(16, "--pack-size", help="Target pack size in MiB (larger for cloud "
                                           "storage: fewer requests).", min=1, max=1024)) -> None:
    """Create a new encrypted repository at --repo / AGENT_REPO."""
    from agent.config import kdf_params
    from agent.repo.format import RepoParams
    from agent.repo.repository import Repository

    app: AppContext = app_context(ctx, json_output)
    backend = app.backend()
    passphrase = app.passphrase(confirm=True, prompt="New repository passphrase")
    repo = Repository.init(backend, passphrase, params=RepoParams(pack_size=pack_size_mib << 20), kdf=kdf_params())
    repo.close()
    if app.settings.json:
        app.emit_json({"repository": repo.id, "location": backend.location})
    else:
        app.out.print(f"created repository {repo.id[:8]} at {backend.location}")
        app.info("keep the passphrase safe: without it the backups cannot be read")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
