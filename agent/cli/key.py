"""`agent key add|list|remove|passwd`: several passphrases for one repository."""

from __future__ import annotations

import os
from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import env, stamps

app = typer.Typer(help="Manage the passphrases (key files) of the repository.", no_args_is_help=True)

_NEW_FILE_HELP = "Read the new passphrase from this file (Env: AGENT_NEW_PASSPHRASE_FILE); else prompt."


def _new_passphrase(app_ctx: AppContext, new_file: Optional[str]) -> bytes:
    import os

    from agent.config.settings import read_secret_file
    from agent.errors import UsageError

    path = new_file or os.environ.get(env.NEW_PASSPHRASE_FILE)
    if path:
        secret = read_secret_file(path, "new passphrase")
        if not secret:
            raise UsageError("the new passphrase is empty")
        return secret
    return app_ctx.prompt_secret("New passphrase", confirm=True)


@app.command("add")
def add(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
        label: str = typer.Option("", "--label", help="A note: who or what uses this key."),
        new_passphrase_file: Optional[str] = typer.Option(None, "--new-passphrase-file", help=_NEW_FILE_HELP)) -> None:
    """Add a passphrase that opens the same repository."""
    from agent.repo.keyring import kdf_params

    a: AppContext = app_context(ctx, json_output)
    with a.repository() as repo:
        key_id = repo.add_key(_new_passphrase(a, new_passphrase_file), label=label,
                              kdf=kdf_params(os.environ.get(env.KDF)))
    a.emit_json("key_add", {"added": key_id}) if a.settings.json else a.out.print(f"added key {key_id[:8]}")


@app.command("list")
def list_keys(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List key files; the one this session opened with is marked."""
    from rich.table import Table

    a: AppContext = app_context(ctx, json_output)
    with a.repository() as repo:
        keys = repo.list_keys()
    if a.settings.json:
        a.emit_json("key_list", {"keys": [{**k, "created": stamps.rfc3339(k["created"])} for k in keys]})
        return
    table = Table(box=None, header_style="bold")
    for col in ("", "id", "created", "host", "user", "label"):
        table.add_column(col)
    for k in keys:
        label = f"damaged: {k['damaged']}" if k["damaged"] else k["label"] or ""
        table.add_row("*" if k["current"] else "", k["id"][:8], stamps.human(k["created"]), k["host"] or "",
                      k["user"] or "", label)
    a.out.print(table)


@app.command("remove")
def remove(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
           key_id: str = typer.Argument(..., help="Key id (unique prefix).")) -> None:
    """Remove a key file (not the one in use)."""
    a: AppContext = app_context(ctx, json_output)
    with a.repository() as repo:
        repo.remove_key(key_id)
    a.emit_json("key_remove", {"removed": key_id}) if a.settings.json else a.out.print(f"removed key {key_id}")


@app.command("passwd")
def passwd(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
           new_passphrase_file: Optional[str] = typer.Option(None, "--new-passphrase-file",
                                                             help=_NEW_FILE_HELP)) -> None:
    """Change the passphrase this session opened with (adds the new key, then removes the old one)."""
    from agent.repo.keyring import kdf_params

    a: AppContext = app_context(ctx, json_output)
    with a.repository() as repo:
        new_id = repo.add_key(_new_passphrase(a, new_passphrase_file), label="changed passphrase",
                              kdf=kdf_params(os.environ.get(env.KDF)))
        repo.replace_key(repo.key_id, new_id)
    if a.settings.json:
        a.emit_json("key_passwd", {"key": new_id})
    else:
        a.out.print(f"passphrase changed (key {new_id[:8]})")
