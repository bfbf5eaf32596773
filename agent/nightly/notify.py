"""Tell a person how the nightly run went: a JSON webhook, an e-mail and/or Apprise URLs, chosen by the
run's status.

Delivery never raises: a broken mail server must not hide the backup's own result. Failures come back
as one-line messages for the caller to log. No secret (SMTP password, webhook token) enters a message,
a log line or a model's repr.
"""

from __future__ import annotations

import http.client
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.config.secrets import Secret
from agent.nightly.report import RunReport, iso, summarize

Event = Literal["failure", "warning", "success"]
_RETRY_DELAY_S = 1.0


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # chat webhooks (Slack, Mattermost, ...) carry their token in the URL path: keep it out of reprs
    url: Annotated[str, Secret("url")] = Field(repr=False)
    headers: Annotated[dict[str, str], Secret()] = Field(default_factory=dict, repr=False)  # e.g. Authorization
    timeout_s: float = Field(10.0, gt=0)
    on: list[Event] | None = None  # overrides [notify].on for this channel

    @field_validator("url")
    @classmethod
    def _http_only(cls, v: str) -> str:
        # urllib also opens file:// and ftp://; a notification target is only ever HTTP(S)
        if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname:
            raise ValueError("must be an http:// or https:// URL")
        return v


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    host: str
    port: int = Field(587, ge=1, le=65535)  # 465 when ssl = true and no port is given
    starttls: bool = True
    ssl: bool = False  # implicit TLS ("SMTPS"); starttls is then irrelevant
    ca_file: str | None = None  # trust this CA bundle instead of the system's (private CAs)
    username: str | None = None
    password_file: str | None = None  # read at send time, so the secret never sits in the config model
    sender: str
    to: list[str] = Field(min_length=1)
    timeout_s: float = Field(30.0, gt=0)
    on: list[Event] | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> EmailConfig:
        if self.ssl and "port" not in self.model_fields_set:
            self.port = 465
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if self.username and not (self.ssl or self.starttls):
            raise ValueError("refusing to send the SMTP password unencrypted: set starttls or ssl")
        return self


class AppriseConfig(BaseModel):
    """Any service Apprise knows (Telegram, Matrix, ntfy, Teams, Pushover, ...): one URL each."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    urls: Annotated[list[str], Secret("scheme")] = Field(min_length=1, repr=False)  # they carry tokens and passwords
    on: list[Event] | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("urls")
    @classmethod
    def _schemed(cls, v: list[str]) -> list[str]:
        for i, url in enumerate(v):
            if "://" not in url:
                raise ValueError(f"entry {i + 1} is not an Apprise URL (scheme://...)")
        return v


def _failure_and_warning() -> list[Event]:
    return ["failure", "warning"]


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    on: list[Event] = Field(default_factory=_failure_and_warning)
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None
    apprise: AppriseConfig | None = None


def send_notifications(cfg: NotifyConfig, report: RunReport) -> list[str]:
    """Deliver to every channel whose `on` list contains the run's status; the delivery errors."""
    errors: list[str] = []
    channels: tuple[tuple[str, WebhookConfig | EmailConfig | AppriseConfig | None], ...] = (
        ("webhook", cfg.webhook), ("e-mail", cfg.email), ("Apprise", cfg.apprise))
    for name, channel in channels:
        if channel is None or report.status not in (channel.on if channel.on is not None else cfg.on):
            continue
        try:
            if isinstance(channel, WebhookConfig):
                _send_webhook(channel, report)
            elif isinstance(channel, AppriseConfig):
                _send_apprise(channel, report)
            else:
                _send_email(channel, report)
        except Exception as exc:  # noqa: BLE001 - never let a notification hide the backup's result
            errors.append(f"{name} notification failed: {_describe(exc)}")
    return errors


# ---- webhook ----------------------------------------------------------------------------------------

def _send_webhook(cfg: WebhookConfig, report: RunReport) -> None:
    # stdlib urllib: one JSON POST a night does not justify an HTTP client dependency
    body = json.dumps({**report.to_dict(), "summary": summarize(report)}).encode()
    where = _origin(cfg.url)
    for attempt in (1, 2):
        req = urllib.request.Request(cfg.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "agent-backup", **cfg.headers})
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:
                resp.read()
            return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code < 500 or attempt == 2:
                raise RuntimeError(f"{where} answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if attempt == 2:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                raise RuntimeError(f"cannot reach {where}: {_describe(reason)}") from None
        time.sleep(_RETRY_DELAY_S)


def _origin(url: str) -> str:
    """scheme://host[:port] only: the path and query of a webhook URL are often its secret token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


# ---- Apprise ---------------------------------------------------------------------------------------

def _send_apprise(cfg: AppriseConfig, report: RunReport) -> None:
    try:
        import apprise
    except ImportError:
        raise RuntimeError("Apprise is not installed: pip install 'agent-imagebackup[apprise]'") from None
    bad = []
    for i, url in enumerate(cfg.urls, 1):  # one object per URL, so a failure names which (by position)
        target = apprise.Apprise()
        if not target.add(url):
            bad.append(f"URL {i} is not one Apprise understands")
            continue
        kind = {"success": apprise.NotifyType.SUCCESS, "warning": apprise.NotifyType.WARNING}.get(
            report.status, apprise.NotifyType.FAILURE)
        if not target.notify(title=f"[agent] {summarize(report)}", body=render_text(report), notify_type=kind):
            bad.append(f"URL {i} ({url.split('://', 1)[0]}://) was not delivered")
    if bad:
        raise RuntimeError("; ".join(bad))


# ---- e-mail -----------------------------------------------------------------------------------------

def _send_email(cfg: EmailConfig, report: RunReport) -> None:
    from agent.config.settings import read_secret_file

    msg = render_email(cfg, report)
    password = read_secret_file(cfg.password_file, "SMTP password").decode() if cfg.password_file else None
    context = ssl.create_default_context(cafile=cfg.ca_file) if (cfg.ssl or cfg.starttls) else None
    where = f"{cfg.host}:{cfg.port}"
    try:
        smtp = (smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context) if cfg.ssl
                else smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s))
    except OSError as exc:
        raise RuntimeError(f"cannot connect to {where}: {_describe(exc)}") from None
    try:
        with smtp:
            if cfg.starttls and not cfg.ssl:
                smtp.starttls(context=context)  # raises if not offered: never fall back to clear text
            if cfg.username:
                try:
                    smtp.login(cfg.username, password or "")
                except smtplib.SMTPAuthenticationError as exc:
                    # smtplib passes the server's reply as bytes; typeshed also allows str
                    reply = exc.smtp_error
                    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
                    raise RuntimeError(f"{where} rejected the login of {cfg.username!r}: {exc.smtp_code} "
                                       f"{_describe(text)}") from None
            try:
                refused = smtp.send_message(msg)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
    except OSError as exc:  # smtplib's and ssl's errors included
        raise RuntimeError(f"{where}: {_describe(exc)}") from None
    if refused:
        raise RuntimeError(f"{where} refused recipient(s) {', '.join(sorted(refused))}")


def render_email(cfg: EmailConfig, report: RunReport) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[agent] {summarize(report)}"
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=report.host or "localhost")  # no slow getfqdn() lookup
    msg.set_content(render_text(report))
    return msg


def render_text(report: RunReport) -> str:
    """Plain text for a person reading mail at breakfast: per source what happened and what to do."""
    from agent.config.units import duration, size

    lines = [summarize(report), "",
             f"host:       {report.host}",
             f"repository: {report.repository}",
             f"started:    {iso(report.started)}",
             f"finished:   {iso(report.finished)} ({duration(report.duration_s)})",
             f"result:     {report.status} (exit code {report.exit_code})", ""]
    for s in report.sources:
        lines.append(f"{s.name} ({s.path}): {s.status}")
        if s.snapshot_id:
            lines.append(f"  snapshot: {s.snapshot_id}")
        if s.read_bytes or s.new_bytes or s.uploaded_bytes:
            lines.append(f"  read {size(s.read_bytes)}, new {size(s.new_bytes)}, uploaded {size(s.uploaded_bytes)}"
                         f" in {duration(s.duration_s)}")
        lines += [f"  error: {s.error}"] if s.error else []
        lines += [f"  hint: {s.hint}"] if s.hint else []
        lines += suspicious_lines(s)
        lines += [f"  warning: {w}" for w in s.warnings]
        if s.verify is not None:
            lines += verify_lines(s.verify)
    if report.errors:
        lines += ["", "run errors:", *(f"  {e}" for e in report.errors)]
    if report.repository_bytes is not None or report.snapshot_count is not None:
        lines += ["", f"repository: {size(report.repository_bytes)} stored, "
                      f"{report.snapshot_count if report.snapshot_count is not None else '?'} snapshots"]
    return "\n".join(lines) + "\n"


def suspicious_lines(s) -> list[str]:
    """A suspicious night (agent.nightly.report.SourceReport.suspicious): what was measured, what is kept."""
    if not s.suspicious:
        return [f"  {s.suspicious_unacknowledged} earlier suspicious night(s) not acknowledged yet (agent ack)"] \
            if s.suspicious_unacknowledged else []
    kept = s.suspicious.get("protected_snapshot")
    return [f"  SUSPICIOUS: {s.suspicious.get('message')}",
            "  possible ransomware or mass encryption: look at the source before trusting tonight's snapshot; "
            + (f"snapshot {kept[:8]} (the last before it) " if kept else "it ") + "is kept from forget until "
            f"`agent ack {(s.snapshot_id or '')[:8]}`"]


def verify_lines(v) -> list[str]:
    """A source's verify (agent.nightly.report.VerifyReport): the outcome, then what is damaged."""
    what = "chunks and filesystems" if v.fsck else "chunks"
    snap = f" of snapshot {v.snapshot_id[:8]}" if v.snapshot_id else ""
    lines = [f"  verify{snap} ({what}): {v.status}"]
    lines += [f"    error: {v.error}"] if v.error else []
    lines += [f"    hint: {v.hint}"] if v.hint else []
    if v.damaged_ranges:
        off, n = v.damaged_ranges[0]
        lines.append(f"    {len(v.damaged_ranges)} damaged range(s), {v.damaged_bytes} bytes, the first at bytes "
                     f"{off}..{off + n}; `agent verify {(v.snapshot_id or '')[:8]} --json` lists them")
    for p in v.partitions:
        name = "image" if p.get("number") is None else f"p{p['number']}"
        if p.get("status") == "damaged":
            lines.append(f"    {name} {p.get('filesystem')}: DAMAGED ({p.get('checker')}, exit status "
                         f"{p.get('exit_status')})")
            lines += [f"      {line}" for line in p.get("output") or []]
        elif p.get("status") == "not checked":
            lines.append(f"    {name}: not checked ({p.get('reason')})")
    lines += [f"    warning: {w}" for w in v.warnings]
    return lines


def _describe(exc: object) -> str:
    """One line without a traceback; the class name when the message is empty (e.g. a bare timeout)."""
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__
