"""`agent config show|check`: the effective configuration (flags > environment > file), secrets redacted."""

from __future__ import annotations

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context

app = typer.Typer(help="Show or validate the configuration file.", no_args_is_help=True)

SET = "(set)"  # a secret is shown as being there, never as its value


def effective(app_ctx: AppContext) -> dict:
    """The config file's content with flag/env overrides applied and every secret replaced."""
    from backends.registry import redact_url

    s, file = app_ctx.settings, app_ctx.config_file
    doc = redacted(file) if file is not None else {}
    doc["repository"] = redact_url(s.repo) if s.repo else None
    doc["passphrase_file"] = s.passphrase_file
    doc["passphrase_command"] = s.passphrase_command
    doc["limits"] = {"upload": s.limit_upload or "off", "download": s.limit_download or "off"}
    return {k: v for k, v in doc.items() if v is not None}


def redacted(model) -> dict:
    """A pydantic model as plain data, each field marked `Secret` (agent.config.secrets) hidden by its
    kind: the model says what is secret, so a new secret field is hidden without touching this."""
    from agent.config.secrets import Secret

    out = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        mark = next((m for m in info.metadata if isinstance(m, Secret)), None)
        out[name] = _hidden(value, mark.kind) if mark else _plain(value)
    return out


def _plain(value):
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return redacted(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _hidden(value, kind: str):
    from urllib.parse import urlsplit

    from backends.registry import redact_url

    if isinstance(value, dict):
        return {k: _hidden(v, kind) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hidden(v, kind) for v in value]
    text = str(value)
    if kind == "location":
        return redact_url(text)
    if kind == "scheme" and "://" in text:
        return f"{text.split('://', 1)[0]}://{SET}"
    if kind == "url" and "://" in text:
        parts = urlsplit(text)
        rest = parts.path not in ("", "/") or parts.query
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" + (f"/{SET}" if rest else "")
    return SET


@app.command("show")
def show(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Print the effective configuration as TOML (or JSON), secrets redacted."""
    import tomli_w

    app_ctx: AppContext = app_context(ctx, json_output)
    doc = effective(app_ctx)
    if app_ctx.settings.json:
        app_ctx.emit_json("config_show", {"config_file": app_ctx.settings.config_path, **doc})
        return
    where = app_ctx.settings.config_path or "none found (flags and environment only)"
    app_ctx.out.print(f"# config file: {where}", markup=False)
    app_ctx.out.print(tomli_w.dumps(doc).rstrip(), markup=False)


@app.command("check")
def check(ctx: typer.Context,
          offline: bool = typer.Option(False, "--offline", help="Skip the repository (sources are still checked)."),
          json_output: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Validate the config file (syntax, fields, values, file permissions; exit 2), then check that every
    source can be read and that the repository is reachable and opens with the passphrase (exit 1)."""
    from agent.errors import UsageError
    from agent.nightly.preflight import check_source

    app_ctx: AppContext = app_context(ctx, json_output)
    file = app_ctx.config_file
    if file is None:
        raise UsageError("no config file found", hint="pass --config PATH or set AGENT_CONFIG")
    checks = [check_source(src.name, src.path, has_pre_hook=bool(src.pre)) for src in file.sources]
    if not offline:
        checks.append(_check_repository(app_ctx))
    ok = all(c.ok for c in checks)
    if app_ctx.settings.json:
        app_ctx.emit_json("config_check", {"config_file": app_ctx.settings.config_path, "ok": ok,
                                           "checks": [c.to_dict() for c in checks]})
    else:
        app_ctx.out.print(f"{app_ctx.settings.config_path}: valid ({len(file.sources)} source(s))", markup=False)
        for c in checks:
            app_ctx.out.print(f"{'ok  ' if c.ok else 'FAIL'}  {c.check}: {c.detail}", markup=False)
    if not ok:
        failed = sum(not c.ok for c in checks)
        app_ctx.err.print(f"error: {failed} check(s) failed", markup=False, highlight=False)
        raise typer.Exit(1)


def _check_repository(app_ctx: AppContext):
    """The repository opens with the passphrase: its key files are read and one is unlocked (no lock taken,
    nothing written)."""
    from agent.cli.context import naming_repository
    from agent.errors import AgentError
    from agent.nightly.preflight import Check
    from agent.repo.keyring import unlock
    from backends.registry import redact_url

    url = app_ctx.settings.repo
    if not url:
        return Check("repository", False, "no repository given (repository in the file, --repo or AGENT_REPO)")
    try:
        with naming_repository(url):
            backend = app_ctx.backend()
            try:
                unlock(backend, app_ctx.passphrase())
            finally:
                backend.close()
    except AgentError as exc:
        return Check("repository", False, str(exc))
    return Check("repository", True, f"{redact_url(url)} is reachable and the passphrase opens it")
