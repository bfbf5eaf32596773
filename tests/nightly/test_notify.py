"""Notifications against real local servers: an aiosmtpd SMTP server (plain, STARTTLS, implicit TLS,
AUTH) and an HTTP receiver. Delivery failures come back as messages, never as exceptions."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from agent.nightly.notify import EmailConfig, NotifyConfig, WebhookConfig, send_notifications
from agent.nightly.report import RunReport, SourceReport
from tests.nightly.samples import failed_source, failing_report, ok_source, report
from tests.servers.smtp import smtp_server
from tests.servers.webhook import webhook_server

PASSWORD = "pw-Zq81-not-in-any-message"


def _email(server, **kw) -> EmailConfig:
    base = dict(host=server.host, port=server.port, starttls=server.ca_file is not None, ca_file=server.ca_file,
                sender="agent@web1.example", to=["ops@example.org", "oncall@example.org"], timeout_s=10)
    return EmailConfig(**{**base, **kw})


def _assert_mentions_everything(text: str, rep: RunReport) -> None:
    assert rep.host in text
    for s in rep.sources:
        assert s.name in text and s.status in text
        for value in (s.snapshot_id, s.error, s.hint):
            if value:
                assert value in text
    for e in rep.errors:
        assert e in text


# ---- e-mail -----------------------------------------------------------------------------------------

def test_email_plain_contains_host_sources_errors_and_hints():
    rep = failing_report()
    with smtp_server() as srv:
        errors = send_notifications(NotifyConfig(email=_email(srv)), rep)
    assert errors == []
    assert len(srv.messages) == 1
    msg = srv.messages[0]
    assert msg["Subject"] == "[agent] FAILURE on web1: 1 of 2 sources failed, 1 run error"
    assert msg["From"] == "agent@web1.example"
    assert srv.envelopes == [("agent@web1.example", ["ops@example.org", "oncall@example.org"])]
    body = msg.get_content()
    _assert_mentions_everything(body, rep)
    assert "exit code 1" in body and "s3://backups.example/web" in body


def test_email_starttls_with_auth(tmp_path):
    (tmp_path / "smtp-pass").write_text(PASSWORD + "\n")
    with smtp_server(tmp_path / "tls", users={"backup": PASSWORD}) as srv:
        cfg = _email(srv, username="backup", password_file=str(tmp_path / "smtp-pass"))
        errors = send_notifications(NotifyConfig(email=cfg), failing_report())
    assert errors == []
    assert srv.logins == ["backup"] and srv.failed_logins == []
    assert len(srv.messages) == 1 and srv.tls_sessions == 1


def test_email_wrong_password_is_reported_without_the_password(tmp_path):
    (tmp_path / "smtp-pass").write_text("wrong-" + PASSWORD)
    with smtp_server(tmp_path / "tls", users={"backup": PASSWORD}) as srv:
        cfg = _email(srv, username="backup", password_file=str(tmp_path / "smtp-pass"))
        errors = send_notifications(NotifyConfig(email=cfg), failing_report())
    assert len(errors) == 1
    assert errors[0].startswith("e-mail notification failed: ") and "rejected the login of 'backup'" in errors[0]
    assert "535" in errors[0] and PASSWORD not in errors[0]
    # smtplib tries each offered mechanism (PLAIN, then LOGIN) before giving up
    assert set(srv.failed_logins) == {"backup"} and srv.logins == [] and srv.messages == []


def test_email_implicit_tls_defaults_to_port_465():
    cfg = EmailConfig(host="mail.example", ssl=True, sender="a@b", to="ops@example.org")
    assert cfg.port == 465 and cfg.to == ["ops@example.org"]


def test_email_implicit_tls(tmp_path):
    with smtp_server(tmp_path / "tls", implicit_tls=True) as srv:
        errors = send_notifications(NotifyConfig(email=_email(srv, ssl=True, starttls=False)), failing_report())
    assert errors == [] and len(srv.messages) == 1 and srv.tls_sessions == 1


def test_email_untrusted_certificate_is_refused(tmp_path):
    with smtp_server(tmp_path / "tls") as srv:
        errors = send_notifications(NotifyConfig(email=_email(srv, ca_file=None)), failing_report())
    assert len(errors) == 1 and "certificate verify failed" in errors[0]
    assert srv.messages == []


def test_email_never_falls_back_to_clear_text():
    with smtp_server() as srv:  # offers no STARTTLS
        errors = send_notifications(NotifyConfig(email=_email(srv, starttls=True)), failing_report())
    assert len(errors) == 1 and "STARTTLS" in errors[0]
    assert srv.messages == []


def test_email_server_down_is_an_error_not_an_exception(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = EmailConfig(host="127.0.0.1", port=port, starttls=False, sender="a@b", to=["c@d"], timeout_s=5)
    errors = send_notifications(NotifyConfig(email=cfg), failing_report())
    assert len(errors) == 1 and errors[0].startswith(f"e-mail notification failed: cannot connect to 127.0.0.1:{port}")


def test_email_missing_password_file_is_an_error(tmp_path):
    with smtp_server(tmp_path / "tls", users={"backup": PASSWORD}) as srv:
        cfg = _email(srv, username="backup", password_file=str(tmp_path / "nope"))
        errors = send_notifications(NotifyConfig(email=cfg), failing_report())
    assert len(errors) == 1 and "does not exist" in errors[0] and srv.messages == []


# ---- webhook ----------------------------------------------------------------------------------------

def test_webhook_posts_the_report_as_json():
    rep = failing_report()
    with webhook_server() as hook:
        cfg = WebhookConfig(url=hook.url + "?token=T0KEN", headers={"Authorization": "Bearer xyz"})
        errors = send_notifications(NotifyConfig(webhook=cfg), rep)
    assert errors == []
    assert len(hook.requests) == 1
    req = hook.requests[0]
    assert req.path == "/hook?token=T0KEN"
    assert req.headers["content-type"] == "application/json" and req.headers["authorization"] == "Bearer xyz"
    body = req.json()
    assert body["summary"] == "FAILURE on web1: 1 of 2 sources failed, 1 run error"
    assert body["status"] == "failure" and body["exit_code"] == 1 and body["host"] == "web1"
    assert body["started"] == "2024-05-01T01:00:00Z" and body["finished"] == "2024-05-01T01:15:00Z"
    assert [s["name"] for s in body["sources"]] == ["system-disk", "data-disk"]
    failed = body["sources"][1]
    assert failed["error"] == rep.sources[1].error and failed["hint"] == rep.sources[1].hint
    assert body["errors"] == rep.errors and body["snapshot_count"] == 17
    _assert_mentions_everything(req.body.decode(), rep)


def test_webhook_retries_once_after_a_server_error():
    with webhook_server([500, 200]) as hook:
        errors = send_notifications(NotifyConfig(webhook=WebhookConfig(url=hook.url)), failing_report())
    assert errors == [] and len(hook.requests) == 2
    assert hook.requests[0].body == hook.requests[1].body


def test_webhook_that_keeps_failing_returns_an_error_without_the_token():
    with webhook_server([503]) as hook:
        cfg = WebhookConfig(url=hook.url + "/SECRET-T0KEN")
        errors = send_notifications(NotifyConfig(webhook=cfg), failing_report())
    assert len(hook.requests) == 2  # the first try and one retry
    host_port = hook.url.split("/")[2]
    assert errors == [f"webhook notification failed: http://{host_port} answered HTTP 503 Service Unavailable"]


def test_webhook_client_error_is_not_retried():
    with webhook_server([404]) as hook:
        errors = send_notifications(NotifyConfig(webhook=WebhookConfig(url=hook.url)), failing_report())
    assert len(hook.requests) == 1 and len(errors) == 1 and "HTTP 404" in errors[0]


def test_webhook_unreachable_is_an_error_not_an_exception():
    with webhook_server() as hook:
        url = hook.url
    errors = send_notifications(NotifyConfig(webhook=WebhookConfig(url=url, timeout_s=5)), failing_report())
    assert len(errors) == 1 and errors[0].startswith("webhook notification failed: cannot reach http://127.0.0.1:")


# ---- which runs notify ------------------------------------------------------------------------------

def test_both_channels_once_each_and_filtering_by_status(tmp_path):
    success = report(ok_source())
    warning = report(ok_source(), SourceReport("usb", "/dev/sdc", "skipped", error="not present"))
    with smtp_server() as srv, webhook_server() as hook:
        cfg = NotifyConfig(email=_email(srv), webhook=WebhookConfig(url=hook.url))
        assert send_notifications(cfg, failing_report()) == []
        assert (len(srv.messages), len(hook.requests)) == (1, 1)
        assert send_notifications(cfg, success) == []  # success is not sent by default
        assert (len(srv.messages), len(hook.requests)) == (1, 1)
        assert send_notifications(cfg, warning) == []
        assert (len(srv.messages), len(hook.requests)) == (2, 2)
        assert srv.messages[1]["Subject"] == "[agent] WARNING on web1: 1 of 2 sources skipped"

        # a channel's own `on` overrides the global one: the webhook feeds a dashboard of every run
        cfg = NotifyConfig(email=_email(srv), webhook=WebhookConfig(url=hook.url, on=["success", "failure"]))
        assert send_notifications(cfg, success) == []
        assert (len(srv.messages), len(hook.requests)) == (2, 3)
        assert hook.requests[-1].json()["status"] == "success"
        assert send_notifications(cfg, warning) == []
        assert (len(srv.messages), len(hook.requests)) == (3, 3)


def test_one_broken_channel_does_not_stop_the_other():
    with smtp_server() as srv, webhook_server([500]) as hook:
        cfg = NotifyConfig(email=_email(srv), webhook=WebhookConfig(url=hook.url))
        errors = send_notifications(cfg, report(failed_source()))
    assert len(errors) == 1 and errors[0].startswith("webhook notification failed")
    assert len(srv.messages) == 1


# ---- configuration ----------------------------------------------------------------------------------

def test_config_rejects_typos_by_field_name():
    with pytest.raises(ValidationError) as exc:
        NotifyConfig.model_validate({"email": {"host": "h", "sender": "a@b", "to": ["c@d"], "startls": False}})
    assert "startls" in str(exc.value)
    with pytest.raises(ValidationError, match="http:// or https://"):
        WebhookConfig(url="file:///etc/shadow")
    with pytest.raises(ValidationError, match="go together"):
        EmailConfig(host="h", sender="a@b", to=["c@d"], username="u")
    with pytest.raises(ValidationError, match="unencrypted"):
        EmailConfig(host="h", sender="a@b", to=["c@d"], username="u", password_file="/p", starttls=False)
    with pytest.raises(ValidationError):
        NotifyConfig(on=["sometimes"])


def test_secrets_stay_out_of_reprs():
    cfg = NotifyConfig(webhook=WebhookConfig(url="https://hooks.example/services/T0KEN",
                                             headers={"Authorization": "Bearer s3cret"}),
                       email=EmailConfig(host="h", sender="a@b", to=["c@d"], username="u", password_file="/pw"))
    text = repr(cfg) + str(cfg)
    assert "T0KEN" not in text and "s3cret" not in text
    assert NotifyConfig().on == ["failure", "warning"]
