"""`agent serve`: the fleet page, live, over HTTP(S). Read-only: GET and HEAD only, and what it calls
reads metadata without a lock, so it can never change the repository or hold up a backup.

Bound to loopback unless told otherwise; any other address needs basic auth (and should get TLS),
because the page names every host and its errors. The status is rebuilt at most every `refresh_s`
seconds however many browsers reload it, so a page left open on a wall screen costs one listing.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from agent.errors import UsageError


@dataclass(frozen=True)
class ServeOptions:
    bind: str = "127.0.0.1"
    port: int = 8080
    refresh_s: int = 300
    credentials: tuple[str, str] | None = None  # basic auth (user, password)
    tls_cert: str | None = None
    tls_key: str | None = None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; a name is resolved, and only loopback answers count."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def check_options(opts: ServeOptions) -> None:
    """Refuse what would publish the fleet's state to the network unprotected."""
    if not is_loopback(opts.bind) and opts.credentials is None:
        raise UsageError(f"refusing to serve on {opts.bind} without authentication: the page names every host "
                         "and its errors", hint="pass --auth-file (user:password) and --tls-cert/--tls-key, "
                                                "or bind to 127.0.0.1 and use an SSH tunnel")
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")


class _Cached:
    """The status dict, rebuilt when older than `max_age` (one build at a time)."""

    def __init__(self, build: Callable[[], dict], max_age: float) -> None:
        self.build, self.max_age = build, max_age
        self.lock = threading.Lock()
        self.value: dict | None = None
        self.at = 0.0

    def get(self) -> dict:
        with self.lock:
            if self.value is None or time.monotonic() - self.at >= self.max_age:
                self.value, self.at = self.build(), time.monotonic()
            return self.value


def make_server(opts: ServeOptions, build: Callable[[], dict],
                on_error: Callable[[str], None] = lambda message: None) -> ThreadingHTTPServer:
    """A server (not yet serving) for the page of `build()`, a `status --json` dict."""
    from agent.nightly.webpage import render_page

    check_options(opts)
    cached = _Cached(build, opts.refresh_s)
    expected = None
    if opts.credentials is not None:
        expected = "Basic " + base64.b64encode(f"{opts.credentials[0]}:{opts.credentials[1]}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "agent"
        sys_version = ""

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's name; requests are not logged
            pass

        def _authorized(self) -> bool:
            if expected is None:
                return True
            given = self.headers.get("Authorization", "")
            if hmac.compare_digest(given.encode(), expected.encode()):
                return True
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="agent status", charset="UTF-8"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False

        def _reply(self, body: bytes, content_type: str, head: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _get(self, head: bool) -> None:
            if not self._authorized():
                return
            path = self.path.split("?", 1)[0]
            if path not in ("/", "/index.html", "/status.json"):
                self.send_error(404)
                return
            try:
                status = cached.get()
            except Exception as exc:  # noqa: BLE001 - the page says what failed; the server stays up
                from agent.repo.storage import as_agent_error

                err = as_agent_error(exc)
                on_error(str(err) if err is not None else f"internal error: {exc.__class__.__name__}")
                self.send_error(503, "the repository could not be read; see the server's log")
                return
            if path == "/status.json":
                self._reply(json.dumps(status).encode(), "application/json", head)
            else:
                self._reply(render_page(status, refresh_s=opts.refresh_s).encode(), "text/html; charset=utf-8",
                            head)

        def do_GET(self) -> None:
            self._get(head=False)

        def do_HEAD(self) -> None:
            self._get(head=True)

        def _read_only(self) -> None:
            self.send_error(405, "read-only")

        do_POST = do_PUT = do_DELETE = do_PATCH = _read_only

    family = socket.AF_INET6 if ":" in opts.bind else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    server = Server((opts.bind, opts.port), Handler)
    if opts.tls_cert and opts.tls_key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(opts.tls_cert, opts.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
