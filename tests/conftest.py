"""Shared fixtures: run the real `agent` command in a subprocess against a temporary repository, or
open one in-process (`repo`) for engine tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

AGENT = [sys.executable, "-m", "agent"]

# Fixtures of the local servers (moto, fake-gcs-server, sshd, smbd, the drives' fakes), for every test
# without importing them by name; each starts its server only when a test asks for it.
pytest_plugins = [
    "tests.servers.moto", "tests.servers.fakegcs", "tests.servers.sshd", "tests.servers.smbd",
    "tests.servers.gdrive_fake", "tests.servers.dropbox_fake", "tests.servers.onedrive_fake",
    "tests.terraform.aws",
]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out.strip().splitlines()[-1])


class Cli:
    """`agent` with AGENT_REPO, a passphrase file, a cheap KDF and a private cache."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.passfile = tmp / "passphrase"
        self.passfile.write_text("correct horse battery staple\n")
        self.passfile.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        self.env.update(AGENT_REPO=str(self.repo), AGENT_PASSPHRASE_FILE=str(self.passfile), AGENT_KDF="1,8,1",
                        AGENT_CACHE_DIR=str(tmp / "cache"))

    def __call__(self, *args: str, check: bool = True, env: dict | None = None, timeout: float = 300) -> Result:
        proc = subprocess.run([*AGENT, *args], capture_output=True, text=True, env={**self.env, **(env or {})},
                              timeout=timeout)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"agent {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return res

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*AGENT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def repo(tmp_path):
    """A fresh local repository with the test KDF and 1 MiB packs (several packs from a few MiB)."""
    from agent.repo.cache import ObjectCache
    from agent.repo.format import RepoParams
    from agent.repo.repository import Repository
    from backends.local import LocalBackend
    from crypto.kdf import TEST_PARAMS

    r = Repository.init(LocalBackend(tmp_path / "repo"), b"pw", kdf=TEST_PARAMS, cache=ObjectCache(None),
                        params=RepoParams(pack_size=1 << 20))
    yield r
    r.close()
