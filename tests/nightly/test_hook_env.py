"""What a hook of `agent run` sees of the agent's environment: everything but secrets, whether they
come from the config's [env], the agent's own variables, a storage SDK's, or the admin's."""

from __future__ import annotations

import os

from backends import env as backend_env

SECRETS = {
    "AGENT_PASSPHRASE": "agent-passphrase-value",
    "AWS_ACCESS_KEY_ID": "AKIAHOOKTESTKEY00001",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key-value",
    "AWS_SESSION_TOKEN": "aws-session-token-value",
    "GOOGLE_CREDENTIALS": '{"private_key": "google-credentials-value"}',
    **{name: f"{name.lower()}-value" for name in backend_env.SECRETS},
    "MYDB_PASSWORD": "mydb-password-value",
    "BUILD_SECRET": "build-secret-value",
    "GITHUB_TOKEN": "github-token-value",
    "MINIO_SECRET_ACCESS_KEY": "minio-secret-value",
}
KEPT = {"KEEP_ME": "visible-to-hooks", "PASSWORD_HINT_FILE": "/etc/hint"}  # no secret suffix: passed on


def test_a_real_hook_sees_no_secret_from_the_environment(tmp_path, cli):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(1 << 20))
    dump = tmp_path / "hook.env"
    cli("init")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
repository = "{cli.repo}"
passphrase_file = "{cli.passfile}"

[env]
AGENT_SMB_PASSWORD_FROM_CONFIG = "config-env-value"

[[sources]]
name = "disk"
path = "{img}"
pre = "env > {dump}"
""")
    cfg.chmod(0o600)
    env = {"AGENT_REPO": "", "AGENT_PASSPHRASE_FILE": "", "AGENT_STATE_DIR": str(tmp_path / "state"),
           **SECRETS, **KEPT}
    cli("--config", str(cfg), "run", env=env)

    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    leaked = sorted(name for name, value in {**SECRETS, "AGENT_SMB_PASSWORD_FROM_CONFIG": "config-env-value"}.items()
                    if name in seen or value in dump.read_text())
    assert leaked == [], leaked
    assert {k: seen.get(k) for k in KEPT} == KEPT
    assert seen["AGENT_SOURCE_NAME"] == "disk" and seen["AGENT_HOOK"] == "pre" and "PATH" in seen
