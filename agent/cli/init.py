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
                                                     "cloud storage: fewer requests).", min=1, max=1024),
         from_repo: Optional[str] = typer.Option(None, "--from-repo", help="Create a target for `agent copy` "
                                                 "from this repository: same chunker parameters and seed, so "
                                                 "copies and direct backups deduplicate (docs/copies.md)."),
         share_keys: bool = typer.Option(False, "--share-keys", help="With --from-repo: also share its master "
                                         "key and id (its passphrases stay separate), so copies move sealed "
                                         "data as it is. Anyone who opens either opens both."),
         from_passphrase_file: Optional[str] = typer.Option(None, "--from-passphrase-file", help="With "
                                                            "--from-repo: read its passphrase from this file. "
                                                            "Env: AGENT_FROM_PASSPHRASE_FILE (or "
                                                            "AGENT_FROM_PASSPHRASE_COMMAND, AGENT_FROM_PASSPHRASE); "
                                                            "else prompt.")) -> None:
    """Create a new encrypted repository at --repo / AGENT_REPO."""
    from agent.errors import UsageError

    if share_keys and not from_repo:
        raise UsageError("--share-keys needs --from-repo: the repository whose keys to share")
    if from_repo:
        if pack_size_mib:
            raise UsageError("--pack-size cannot be combined with --from-repo: the new repository takes the "
                             "source's parameters")
        _init_from(ctx, json_output, from_repo, share_keys, from_passphrase_file)
        return
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
        app.emit_json("init", {"repository": repo_id, "location": backend.location, "pack_size": pack_size})
    else:
        app.out.print(f"created repository {repo_id[:8]} at {backend.location} (packs of {pack_size >> 20} MiB)")
        app.info("keep the passphrase safe: without it the backups cannot be read")


def _init_from(ctx: typer.Context, json_output: bool, from_repo: str, share_keys: bool,
               from_passphrase_file: str | None) -> None:
    from agent.config.settings import init_source
    from agent.repo.keyring import kdf_params

    app: AppContext = app_context(ctx, json_output)
    source = init_source(from_repo, from_passphrase_file, None)
    backend = app.backend()
    try:
        passphrase = app.passphrase(confirm=True, prompt="New repository passphrase")
        with app.other_repository(source) as src:
            from agent.repo.repository import Repository

            repo = Repository.init_from(backend, passphrase, src, share_keys=share_keys,
                                        kdf=kdf_params(os.environ.get(env.KDF)))
            repo_id, pack_size, src_location = repo.id, repo.params.pack_size, src.location
    finally:
        backend.close()
    if app.settings.json:
        app.emit_json("init", {"repository": repo_id, "location": backend.location, "pack_size": pack_size,
                       "from": src_location, "shared_keys": share_keys})
    else:
        how = "sharing its keys" if share_keys else "with its own keys"
        app.out.print(f"created repository {repo_id[:8]} at {backend.location} for copies of {src_location} "
                      f"({how}; its chunker parameters)")
        app.info("keep the passphrase safe: without it the backups cannot be read")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
