"""`agent init`: create an encrypted repository."""

from __future__ import annotations

import os
from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import env


def init(ctx: typer.Context,
         json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
         pack_size_mib: Optional[int] = typer.Option(None, "--pack-size", help="Target pack size in MiB; default: "
                                                     "what the backend prefers (16 MiB on disks and NAS, larger on "
                                                     "cloud storage: fewer requests).", min=1, max=1024)) -> None:
    """Create a new encrypted repository at --repo / AGENT_REPO."""
    from agent.repo.format import RepoParams
    from agent.repo.keyring import create, kdf_params

    app: AppContext = app_context(ctx, json_output)
    backend = app.backend()
    passphrase = app.passphrase(confirm=True, prompt="New repository passphrase")
    pack_size = pack_size_mib << 20 if pack_size_mib else min(max(backend.capabilities.preferred_object_size, 1 << 20),
                                                             1 << 30)
    try:  # only the keys and config: the engine's modules are not even loaded (agent.repo.keyring)
        repo_id = create(backend, passphrase, RepoParams(pack_size=pack_size),
                         kdf_params(os.environ.get(env.KDF))).config["id"]
    finally:
        backend.close()
    if app.settings.json:
        app.emit_json({"repository": repo_id, "location": backend.location, "pack_size": pack_size})
    else:
        app.out.print(f"created repository {repo_id[:8]} at {backend.location} (packs of {pack_size >> 20} MiB)")
        app.info("keep the passphrase safe: without it the backups cannot be read")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
