"""moto_server as a session fixture: a real S3 (and IAM) endpoint on loopback.

Tests isolate themselves with a fresh bucket each, so one server serves the whole session.
IAM enforcement is a global switch in moto, so tests that turn it on start their own server
with `start_moto()`.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers.process import ServerProcess

INSTALL_HINT = "pip install 'moto[s3,iam]' flask flask-cors boto3"


def _moto_server_binary() -> str:
    local = os.path.join(os.path.dirname(sys.executable), "moto_server")
    binary = local if os.path.exists(local) else shutil.which("moto_server")
    try:
        import moto.server  # noqa: F401  - the server needs flask as well as moto
    except ImportError:
        binary = None
    if not binary:
        pytest.skip(f"moto_server is not installed; install it with: {INSTALL_HINT}")
    return binary


def start_moto(env: dict[str, str] | None = None, *, lock_actions: bool = False,
               log_path: Path | None = None) -> ServerProcess:
    """A private moto_server (for tests that flip global switches such as IAM checking).

    `lock_actions` authorizes Object Lock requests under AWS's action names
    (tests/servers/moto_lock_actions.py); `log_path` keeps its request log, one line per request.
    """
    binary = _moto_server_binary()
    argv = [sys.executable, "-m", "tests.servers.moto_lock_actions"] if lock_actions else [binary]
    return ServerProcess(argv + ["-H", "127.0.0.1", "-p", "{port}"], env=env, log_path=log_path)


def moto_api(endpoint: str, path: str, body: bytes = b"") -> None:
    """POST to moto's control API, e.g. ("/moto-api/reset") or ("/moto-api/reset-auth", b"0")."""
    req = urllib.request.Request(endpoint + path, data=body, method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=10).close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = start_moto()
    try:
        yield server.url
    finally:
        server.stop()
