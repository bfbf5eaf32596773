"""Every AGENT_* variable is named once, in agent.config.env or backends.env, and documented."""

from __future__ import annotations

import re
from pathlib import Path

from agent.config import env as agent_env
from backends import env as backend_env

ROOT = Path(__file__).resolve().parents[2]
LITERAL = re.compile(r"""(?:environ(?:\.get)?\(|environ\[|getenv\()\s*f?["'](AGENT_[A-Z_]*)""")


def _names(module) -> set[str]:
    return {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str) and v.startswith("AGENT_")}


def test_code_reads_the_environment_through_the_name_modules_only():
    offenders = []
    for path in [*ROOT.glob("agent/**/*.py"), *ROOT.glob("backends/**/*.py")]:
        if path.name == "env.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if LITERAL.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_every_name_is_documented_for_users():
    docs = " ".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    names = (_names(agent_env) | _names(backend_env)) - set(agent_env.TEST_ONLY)
    assert len(names) >= 25
    assert sorted(n for n in names if n not in docs) == []
    for service in ("gdrive", "dropbox", "onedrive"):
        assert backend_env.token_file(service) in docs


def test_the_two_modules_do_not_overlap_and_hooks_never_see_secrets():
    assert not _names(agent_env) & _names(backend_env)
    assert set(agent_env.SECRETS) == {"AGENT_PASSPHRASE", "AGENT_NEW_PASSPHRASE", "AGENT_TO_PASSPHRASE",
                                      "AGENT_FROM_PASSPHRASE"}


def test_the_secret_rule_matches_every_backend_secret_and_no_path():
    from agent.config.secrets import is_secret

    assert set(backend_env.SECRETS) and all(is_secret(n) for n in backend_env.SECRETS)
    assert all(is_secret(n) for n in agent_env.SECRETS)
    paths = [agent_env.PASSPHRASE_FILE, agent_env.NEW_PASSPHRASE_FILE, agent_env.TO_PASSPHRASE_FILE,
             agent_env.FROM_PASSPHRASE_COMMAND, backend_env.SFTP_KEY_FILE,
             backend_env.token_file("gdrive"), "GOOGLE_APPLICATION_CREDENTIALS", "PATH", "HOME"]
    assert [n for n in paths if is_secret(n)] == []
