"""A fork server for `agent`, so the documentation examples do not pay Python's imports per command.

Starting `agent` costs about half a second of imports (typer, rich, pydantic, the repository
code) before it does anything; the docs run some sixty commands. The server imports the CLI once and
forks a fresh child per command; the `agent` script the pages call is a tiny client that hands the
child its argv, environment, working directory and stdin/stdout/stderr (as file descriptors) and
exits with the child's exit code. Each command still runs `agent.cli.main.run()` in its own process,
from a pristine post-import state, with its own pid, environment and time zone.

DOCS_TEST_REAL_AGENT=1 makes tests/docs/examples.py put the venv's real `agent` on PATH instead.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import pkgutil
import signal
import socket
import sys
import time
import traceback

CLIENT = '''\
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["DOCS_AGENT_SERVER"])
req = {"args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
socket.send_fds(s, [json.dumps(req).encode()], [0, 1, 2])
s.shutdown(socket.SHUT_WR)
reply = b""
while chunk := s.recv(64):
    reply += chunk
sys.exit(int(reply) if reply.strip() else 1)
'''


def _warm_up() -> None:
    """Import the CLI and every agent module commands import lazily (not the optional backends)."""
    import agent
    import agent.cli.main

    for mod in pkgutil.walk_packages(agent.__path__, "agent."):
        if mod.name.endswith("__main__"):  # importing it would run the CLI
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:  # an optional dependency: the command imports it itself
            pass
    for name in ("backends.local", "backends.registry", "backends.middleware"):
        try:
            importlib.import_module(name)
        except Exception:
            pass


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while chunk := conn.recv(1 << 16):
            data += chunk
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        req = json.loads(data)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        time.tzset()
        sys.argv = ["agent", *req["args"]]
        from agent.cli.main import run

        try:
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # what a normal interpreter exit would run (executor joins etc.)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        conn.sendall(str(code).encode())
    finally:
        os._exit(code)


def serve(path: str) -> None:
    """Accept commands on the Unix socket `path` until killed; one forked child per command."""
    _warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        if os.fork() == 0:
            srv.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for its own children
            _child(conn)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
