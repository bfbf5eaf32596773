"""`ServerProcess`: a server started from an argv with "{port}" filled in by a free loopback port.

Used by the moto and fake-gcs fixtures; the mechanics (own session, PR_SET_PDEATHSIG, stop by
PID with the children) live in tests/servers/daemon.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.servers.daemon import free_port, spawn, stop, wait_port


class ServerProcess:
    """A server started from an argv in which "{port}" is replaced by a free loopback port."""

    host = "127.0.0.1"

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, *, timeout: float = 15.0,
                 log_path: Path | None = None) -> None:
        self.port = free_port()
        self.proc = spawn([a.replace("{port}", str(self.port)) for a in argv], log_path=log_path, env=env)
        try:
            wait_port(self.port, self.proc, log_path, timeout=timeout)
        except BaseException:
            stop(self.proc, hard=True)
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop(self.proc)
