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
        app_ctx.emit_json({"config_file": app_ctx.settings.config_path, **doc})
        return
    where = app_ctx.settings.config_path or "none found (flags and environment only)"
    app_ctx.out.print(f"# config file: {where}", markup=False)
    app_ctx.out.print(tomli_w.dumps(doc).rstrip(), markup=False)


@app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate the config file (syntax, fields, values, file permissions); exit 2 on a problem."""
    from agent.errors import UsageError

    app_ctx: AppContext = app_context(ctx)
    file = app_ctx.config_file
    if file is None:
        raise UsageError("no config file found", hint="pass --config PATH or set AGENT_CONFIG")
    n = len(file.sources)
    app_ctx.out.print(f"{app_ctx.settings.config_path}: OK ({n} source(s))")
