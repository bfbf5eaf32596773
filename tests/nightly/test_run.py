"""`agent run` end to end: config file -> hooks -> backups -> retention -> state, metrics and
notifications, against real local SMTP and HTTP receivers and a real S3 (moto) endpoint."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.servers.moto import moto_api, start_moto
from tests.servers.smtp import smtp_server
from tests.servers.webhook import webhook_server

MiB = 1 << 20


def _write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o600)
    return path


def _sources(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    a.write_bytes(os.urandom(3 * MiB) + bytes(MiB))
    b.write_bytes(os.urandom(2 * MiB))
    return a, b


@pytest.fixture
def moto_checking_credentials():
    """A private moto_server that checks every request's credentials (a server-wide switch)."""
    boto3 = pytest.importorskip("boto3")
    server = start_moto()
    try:
        bucket = f"run-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=bucket)
        moto_api(server.url, "/moto-api/reset-auth", b"0")
        yield server.url, bucket
    finally:
        server.stop()


def test_failing_backup_sends_one_webhook_and_one_mail_with_host_source_error_and_hint(
        tmp_path, cli, moto_checking_credentials):
    """The acceptance case: bad credentials for the repository."""
    moto_endpoint, bucket = moto_checking_credentials
    a, _ = _sources(tmp_path)
    with smtp_server() as smtp, webhook_server() as hook:
        cfg = _write_config(tmp_path / "agent.toml", f"""
repository = "s3://{bucket}/repo?endpoint={moto_endpoint}&region=us-east-1"
passphrase_file = "{cli.passfile}"
host = "office-server"

[env]
AWS_ACCESS_KEY_ID = "wrong-key"
AWS_SECRET_ACCESS_KEY = "wrong-secret"

[[sources]]
name = "system-disk"
path = "{a}"

[notify.webhook]
url = "{hook.url}"

[notify.email]
host = "127.0.0.1"
port = {smtp.port}
starttls = false
sender = "agent@office.example"
to = ["admin@office.example"]
""")
        env = {"AGENT_REPO": "", "AGENT_PASSPHRASE_FILE": "", "AWS_CONFIG_FILE": "/nonexistent",
               "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AGENT_STATE_DIR": str(tmp_path / "state")}
        res = cli("--config", str(cfg), "run", check=False, env=env, timeout=120)
        assert res.code == 1, res.out + res.err
        assert len(hook.requests) == 1 and len(smtp.messages) == 1
        body = hook.requests[0].json()
        assert body["host"] == "office-server" and body["status"] == "failure"
        src = body["sources"][0]
        assert src["name"] == "system-disk" and src["path"] == str(a) and src["status"] == "failed"
        assert "credentials" in src["error"] and src["hint"]
        mail = smtp.messages[0]
        text = mail.get_content()
        assert "office-server" in mail["Subject"] and "FAILURE" in mail["Subject"]
        for needle in ("system-disk", "credentials", src["hint"]):
            assert needle in text
        assert "wrong-secret" not in text and "wrong-secret" not in hook.requests[0].body.decode()
        assert "wrong-secret" not in res.out + res.err
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["last_status"] == "failure" and state["last_exit_code"] == 1


def test_nightly_run_hooks_retention_metrics_and_exit_codes(tmp_path, cli):
    a, b = _sources(tmp_path)
    log = tmp_path / "hooks.log"
    prom = tmp_path / "agent.prom"
    cli("init")
    with webhook_server() as hook:
        cfg = _write_config(tmp_path / "agent.toml", f"""
repository = "{cli.repo}"
passphrase_file = "{cli.passfile}"

[[sources]]
name = "disk-a"
path = "{a}"
tags = ["nightly"]
pre = "echo pre $AGENT_SOURCE_NAME >> {log}"
post = "echo post $AGENT_SOURCE_NAME $AGENT_STATUS >> {log}"

[[sources]]
name = "disk-b"
path = "{b}"
direct_io = false

[retention]
keep_last = 2

[check]
read_data_subset = "50%"

[metrics]
textfile = "{prom}"

[notify]
on = ["failure", "warning", "success"]
[notify.webhook]
url = "{hook.url}"
""")
        env = {"AGENT_REPO": "", "AGENT_PASSPHRASE_FILE": "", "AGENT_STATE_DIR": str(tmp_path / "state")}
        for _night in range(3):
            res = cli("--config", str(cfg), "run", "--json", env=env)
            summary = res.json()
            assert summary["event"] == "run" and summary["status"] == "success", res.out
        assert [r.json()["status"] for r in hook.requests] == ["success"] * 3
    assert log.read_text().splitlines() == ["pre disk-a", "post disk-a ok"] * 3
    snaps = cli("snapshots", "--json").json()["snapshots"]
    assert len(snaps) == 4  # keep_last = 2 per source, after three nights
    assert all("nightly" in s["tags"] for s in snaps if s["source"] == str(a))
    text = prom.read_text()
    assert 'agent_source_status{source="disk-a"} 1' in text and "agent_repository_snapshots 4" in text

    # a failing pre hook skips that source: exit 3, the other source is still backed up
    broken = _write_config(tmp_path / "broken.toml", cfg.read_text().replace(
        f'pre = "echo pre $AGENT_SOURCE_NAME >> {log}"', 'pre = "echo no snapshot volume >&2; exit 5"'))
    res = cli("--config", str(broken), "run", check=False, env=env)
    assert res.code == 3, res.out + res.err
    assert "disk-a" in res.out and "SKIPPED" in res.out and "exit status 5" in res.out
    assert "disk-b" in res.out and "post disk-a skipped" in log.read_text()


def test_config_errors_name_the_field_and_value(tmp_path, cli):
    bad = _write_config(tmp_path / "agent.toml", """
repository = "/srv/backup"
[limits]
upload = "4 parsecs"
[[sources]]
name = "root"
path = "/dev/sda"
colour = "blue"
[window]
stop_at = "25:00"
""")
    res = cli("--config", str(bad), "config", "check", check=False)
    assert res.code == 2
    for needle in ("limits.upload", "4 parsecs", "sources[0].colour", "window.stop_at", "25:00"):
        assert needle in res.err, res.err
    syntax = _write_config(tmp_path / "syntax.toml", "repository = \n")
    res = cli("--config", str(syntax), "config", "show", check=False)
    assert res.code == 2 and "not valid TOML" in res.err and "line 1" in res.err


def test_secrets_need_a_private_file_and_never_show(tmp_path, cli):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('repository = "s3://bucket/p"\n[env]\nAWS_SECRET_ACCESS_KEY = "hunter2hunter2"\n')
    cfg.chmod(0o644)
    res = cli("--config", str(cfg), "config", "show", check=False)
    assert res.code == 2 and "chmod 600" in res.err and "env.AWS_SECRET_ACCESS_KEY" in res.err
    cfg.chmod(0o600)
    shown = cli("--config", str(cfg), "config", "show", env={"AGENT_REPO": ""})
    assert "hunter2hunter2" not in shown.out and "(set)" in shown.out


def test_flags_beat_named_file_beats_environment_beats_found_file(tmp_path, cli):
    cfg = _write_config(tmp_path / "agent.toml", 'repository = "/from/file"\n[limits]\nupload = "1MiB/s"\n')
    env_only = cli("--config", str(cfg), "config", "show", "--json", env={"AGENT_REPO": ""}).json()
    assert env_only["repository"] == "/from/file" and env_only["limits"]["upload"] == "1MiB/s"
    # a file found through AGENT_CONFIG (or a default location) yields to the variables ...
    from_env = cli("config", "show", "--json",
                   env={"AGENT_CONFIG": str(cfg), "AGENT_REPO": "/from/env", "AGENT_LIMIT_UPLOAD": "2MiB/s"})
    assert from_env.json()["repository"] == "/from/env" and from_env.json()["limits"]["upload"] == "2MiB/s"
    assert "using the repository /from/env, not /from/file" in from_env.err, from_env.err
    # ... one named with --config wins over them
    named = cli("--config", str(cfg), "config", "show", "--json",
                env={"AGENT_REPO": "/from/env", "AGENT_LIMIT_UPLOAD": "2MiB/s"})
    assert named.json()["repository"] == "/from/file" and named.json()["limits"]["upload"] == "1MiB/s"
    assert "using the repository /from/file, not /from/env" in named.err, named.err
    from_flag = cli("--config", str(cfg), "--repo", "/from/flag", "config", "show", "--json",
                    env={"AGENT_REPO": "/from/env"}).json()
    assert from_flag["repository"] == "/from/flag" and from_flag["config_file"] == str(cfg)


def test_run_without_a_config_file_says_where_to_put_one(tmp_path, cli):
    res = cli("run", check=False, env={"AGENT_CONFIG": str(tmp_path / "missing.toml")})
    assert res.code == 2 and "does not exist" in res.err


def test_retention_without_a_rule_is_refused_before_anything_runs(tmp_path, cli):
    cfg = _write_config(tmp_path / "agent.toml", 'repository = "/srv/backup"\n[retention]\nprune = true\n')
    res = cli("--config", str(cfg), "config", "check", check=False)
    assert res.code == 2 and "retention: set at least one keep_* rule" in res.err


def test_config_errors_and_show_never_print_secrets(tmp_path, cli):
    """A check across a whole table (duplicate source names), a mistyped table holding a token, and
    `config show` of every setting that can hold a credential: the secrets never reach the output."""
    secrets = ("hunter2hunter2", "T0KEN-webhook-9f8e", "apprise-pass-77", "ping-uuid-5c2a", "copy-pass-31")
    dup = tmp_path / "dup.toml"
    dup.write_text(f'repository = "/srv/backup"\n[env]\nAWS_SECRET_ACCESS_KEY = "{secrets[0]}"\n'
                   '[[sources]]\nname = "a"\npath = "/dev/sda"\n[[sources]]\nname = "a"\npath = "/dev/sdb"\n'
                   f'[notify.webhok]\nurl = "https://hooks.example/{secrets[1]}"\n')
    dup.chmod(0o600)
    res = cli("--config", str(dup), "config", "check", check=False)
    assert res.code == 2 and "notify.webhok: unknown setting" in res.err, res.err
    assert not any(s in res.err + res.out for s in secrets), res.err
    dup.write_text(dup.read_text().split("[notify.webhok]")[0])  # the duplicate names alone: a whole-file check
    res = cli("--config", str(dup), "config", "check", check=False)
    assert res.code == 2 and "a" in res.err and secrets[0] not in res.err + res.out, res.err
    full = tmp_path / "full.toml"
    full.write_text(f'repository = "/srv/backup"\n'
                    f'[[sources]]\nname = "a"\npath = "/dev/sda"\nhealthcheck = "https://hc.example/{secrets[3]}"\n'
                    f'[notify.apprise]\nurls = ["mailto://admin:{secrets[2]}@mail.example"]\n'
                    f'[[copies]]\nname = "offsite"\nrepository = "sftp://backup:{secrets[4]}@nas.example/repo"\n')
    full.chmod(0o600)
    for args in (("config", "show"), ("config", "show", "--json")):
        shown = cli("--config", str(full), *args, env={"AGENT_REPO": ""})
        assert not any(s in shown.out + shown.err for s in secrets), shown.out
        assert "hc.example" in shown.out and "nas.example" in shown.out
