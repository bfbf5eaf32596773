"""Secrets in the config file never reach output: not in `config show` (a secret is shown as set,
not as its value), not in validation errors (built from the field's path and rule, never its input)."""

from __future__ import annotations

import json
from pathlib import Path


def _private(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o600)
    return path


def test_show_hides_webhook_tokens_in_the_path_and_apprise_tokens_in_the_host(tmp_path, cli):
    cfg = _private(tmp_path / "agent.toml", """
repository = "/srv/backup"
[env]
AWS_SECRET_ACCESS_KEY = "hunter2hunter2"
[notify.webhook]
url = "https://hooks.example/services/T0KEN-in-path-4411"
headers = { Authorization = "Bearer hdr-secret-2290" }
[notify.apprise]
urls = ["tgram://bot-token-8812/chat-id"]
""")
    secrets = ("hunter2hunter2", "T0KEN-in-path-4411", "hdr-secret-2290", "bot-token-8812")
    for args in (("config", "show"), ("config", "show", "--json")):
        res = cli("--config", str(cfg), *args, env={"AGENT_REPO": ""})
        assert not any(s in res.out + res.err for s in secrets), res.out
    doc = json.loads(res.out)
    assert doc["env"] == {"AWS_SECRET_ACCESS_KEY": "(set)"}
    assert doc["notify"]["webhook"]["url"] == "https://hooks.example/(set)"
    assert doc["notify"]["webhook"]["headers"] == {"Authorization": "(set)"}
    assert doc["notify"]["apprise"]["urls"] == ["tgram://(set)"]


def test_show_keeps_the_repository_path_but_not_its_password_or_secret_query(tmp_path, cli):
    cfg = _private(tmp_path / "agent.toml",
                   'repository = "s3://bucket/prefix?secret_key=qsecret-5521"\n'
                   '[[copies]]\nname = "nas"\nrepository = "smb://backup:pw-6613@nas.example/share/repo"\n')
    res = cli("--config", str(cfg), "config", "show", "--json", env={"AGENT_REPO": ""})
    assert "qsecret-5521" not in res.out and "pw-6613" not in res.out, res.out
    doc = json.loads(res.out)
    assert doc["repository"].startswith("s3://bucket/prefix") and "nas.example/share/repo" in res.out


def test_errors_never_print_a_secret_of_the_wrong_type(tmp_path, cli):
    """A number where a string belongs used to be echoed as "(got ...)" whatever the field."""
    cfg = _private(tmp_path / "agent.toml", """
repository = "/srv/backup"
[env]
AGENT_SMB_PASSWORD = 987654321
[notify.webhook]
url = "https://hooks.example/x"
headers = { Authorization = 55443322 }
""")
    res = cli("--config", str(cfg), "config", "check", check=False)
    assert res.code == 2 and "env.AGENT_SMB_PASSWORD" in res.err and "notify.webhook.headers" in res.err, res.err
    assert "987654321" not in res.err + res.out and "55443322" not in res.err + res.out, res.err
    assert "Traceback" not in res.err
