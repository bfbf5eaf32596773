"""URL -> backend resolution: secrets never printed, clear errors for unknown schemes and missing SDKs.

A missing SDK is simulated in a child interpreter whose import system refuses the SDK's
package, so nothing is uninstalled and this process's modules stay untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backends.errors import BackendError
from backends.local import LocalBackend
from backends.memory import MemoryBackend
from backends.registry import open_backend, redact_url

ROOT = Path(__file__).resolve().parents[2]

# A meta-path finder placed first refuses the named top-level packages, as if not installed.
_BLOCKER = textwrap.dedent("""\
    import importlib.abc, json, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
""")

_OPEN = _BLOCKER + textwrap.dedent("""\
    from backends.registry import open_backend
    try:
        open_backend(sys.argv[2])
    except Exception as exc:
        sys.stdout.write(json.dumps({"type": type(exc).__name__, "message": str(exc),
                                     "mro": [c.__name__ for c in type(exc).__mro__]}))
""")


def _child(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=60)


# -- redact_url --------------------------------------------------------------------------------

@pytest.mark.parametrize("url, secret, kept", [
    ("sftp://backup:hunter2@nas.lan:2222/srv/repo", "hunter2", "sftp://backup:***@nas.lan:2222/srv/repo"),
    ("smb://CORP;backup:p%40ss@filer/share/repo", "p%40ss", "smb://CORP;backup:***@filer/share/repo"),
    ("sftp://me:pa@ss@host/r", "pa@ss", "sftp://me:***@host/r"),  # an unescaped @ in the password
    ("s3://bkt/p?region=eu-west-1&secret=s3cr3t", "s3cr3t", "region=eu-west-1&secret=***"),
    ("gs://bkt/p?Token=abc123&project=x", "abc123", "Token=***&project=x"),
    ("s3://bkt/p?sig=deadbeef&sas=feedface", "deadbeef", "sig=***&sas=***"),
    ("s3://bkt/p?endpoint=https://AKIAX:wJalrXUt@minio.lan:9000", "wJalrXUt",
     "endpoint=https://AKIAX:***@minio.lan:9000"),
])
def test_redact_url_hides_passwords_and_secret_values(url, secret, kept):
    redacted = redact_url(url)
    assert secret not in redacted
    assert kept in redacted


@pytest.mark.parametrize("url", [
    "/srv/backup/repo", "relative/repo", "C:/backup", "file:///srv/repo", "memory://t",
    "s3://bkt/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1", "sftp://backup@nas:22/srv/repo",
])
def test_redact_url_leaves_urls_without_secrets_alone(url):
    assert redact_url(url) == url


# -- resolution --------------------------------------------------------------------------------

def test_paths_and_builtin_schemes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    be = open_backend("repo")
    assert isinstance(be, LocalBackend) and be.root == tmp_path / "repo"
    assert not (tmp_path / "repo").exists()  # opening never creates: a typo must not become a repository
    assert isinstance(open_backend(f"file://{tmp_path}/r2"), LocalBackend)
    assert open_backend("memory://scratch").location == "memory://scratch"
    assert isinstance(open_backend("memory://"), MemoryBackend)


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(BackendError) as info:
        open_backend("ftp://backup:hunter2@host/repo")
    message = str(info.value)
    assert "unknown repository scheme 'ftp'" in message
    for scheme in ("file://", "gs://", "memory://", "s3://", "sftp://", "smb://"):
        assert scheme in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url, blocked, extra, package", [
    ("s3://b/p", "boto3,botocore", "s3", "boto3"),
    ("gs://b/p", "google", "gcs", "google"),
    ("sftp://u@h/p", "paramiko", "sftp", "paramiko"),
    ("smb://u@h/share/p", "smbclient,smbprotocol", "smb", "smbclient"),
])
def test_missing_sdk_names_the_extra_to_install(url, blocked, extra, package):
    child = _child(_OPEN, blocked, url)
    assert child.returncode == 0, child.stderr
    error = json.loads(child.stdout)
    assert error["type"] == "BackendUnavailable" and "BackendError" in error["mro"]
    assert f"install it with: pip install 'agent-imagebackup[{extra}]'" in error["message"]
    assert f"needs the Python package '{package}'" in error["message"]


def test_missing_sdk_through_the_cli_is_one_clear_line(tmp_path):
    """What a user of a minimal install sees: exit 17, the install hint, no traceback."""
    script = _BLOCKER + "from agent.cli.main import run\nsys.argv = ['agent', *sys.argv[2:]]\nrun()\n"
    child = _child(script, "boto3,botocore", "--repo", "s3://bkt/repo", "init",
                   env={"AGENT_PASSPHRASE": "x", "AGENT_CACHE_DIR": str(tmp_path)})
    assert child.returncode == 17, child.stderr
    assert "Traceback" not in child.stderr
    first = child.stderr.splitlines()[0]
    assert first.startswith("error:") and "pip install 'agent-imagebackup[s3]'" in first
