"""`agent config show|check`: the effective configuration (flags > environment > file), secrets redacted."""

from __future__ import annotations

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context

app = typer.Typer(help="Show or validate the configuration file.", no_args_is_help=True)

REDACTED = "<redacted>"


def effective(app_ctx: AppContext) -> dict:
    """The config file's content with flag/env overrides applied and every secret replaced."""
    from backends.registry import redact_url

    s, file = app_ctx.settings, app_ctx.config_file
    doc = file.model_dump(mode="json", exclude_none=True) if file is not None else {}
    doc["repository"] = redact_url(s.repo) if s.repo else None
    doc["passphrase_file"] = s.passphrase_file
    doc["passphrase_command"] = s.passphrase_command
    doc["limits"] = {"upload": s.limit_upload or "off", "download": s.limit_download or "off"}
    doc["env"] = dict.fromkeys(doc.get("env", {}), REDACTED) or None
    webhook = doc.get("notify", {}).get("webhook")
    if webhook:
        webhook["url"] = redact_url(webhook["url"])
        webhook["headers"] = dict.fromkeys(webhook.get("headers", {}), REDACTED)
    apprise = doc.get("notify", {}).get("apprise")
    if apprise:  # tokens and passwords are anywhere in an Apprise URL
        apprise["urls"] = [REDACTED for _ in apprise.get("urls", [])]
    for src in doc.get("sources", []):
        if src.get("healthcheck"):  # the path of a ping URL is its secret
            src["healthcheck"] = _origin(src["healthcheck"]) + "/" + REDACTED
    for copy in doc.get("copies", []):
        copy["repository"] = redact_url(copy["repository"])
    return {k: v for k, v in doc.items() if v is not None}


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


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
def check(ctx: typer.Context) -> None:
    """Validate the config file (syntax, fields, values, file permissions); exit 2 on a problem."""
    from agent.errors import UsageError

    app_ctx: AppContext = app_context(ctx)
    file = app_ctx.config_file
    if file is None:
        raise UsageError("no config file found", hint="pass --config PATH or set AGENT_CONFIG")
    n = len(file.sources)
    app_ctx.out.print(f"{app_ctx.settings.config_path}: OK ({n} source(s))")
