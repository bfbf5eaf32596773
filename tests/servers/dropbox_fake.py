"""An HTTPS fake of the Dropbox API v2 routes the agent uses, for the official SDK to talk to.

Nothing emulates Dropbox, and the SDK always speaks https://, so this is a stdlib
ThreadingHTTPServer behind a throw-away CA made with `cryptography`. It keeps the wire
contract the SDK decodes: RPC / upload / download styles, `Content-Type: application/json`
exactly, results in `Dropbox-API-Result` for downloads, and route errors as the stone unions
of each route's error type. It also checks what a client could get wrong: the 150 MiB
per-request cap, upload-session offsets (sequential and concurrent), the per-call
`content_hash`, PKCE at /oauth2/token, and expired or revoked tokens.

Faults on demand (`add_fault`): the next N requests whose route matches a regex get a 429
(`too_many_requests` or `too_many_write_operations`, with Retry-After), a 503, a reset
connection, or their upload body corrupted on arrival. `quota` makes writes fail with
`insufficient_space`. `calls()` is the request log the tests assert on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.servers.dropbox_fake_files import BINARY_ROUTES, ROUTES, DropboxFiles, RouteError, error_summary
from tests.servers.tls import server_context

APP_KEY = "test-app-key"


def make_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """(CA file, server context) for the fake's HTTPS endpoint."""
    return server_context(directory, "agent test dropbox fake")


@dataclass
class Fault:
    match: str
    kind: str  # "rate_limit" | "write_ops" | "unavailable" | "reset" | "corrupt"
    times: int = 1
    retry_after: int = 1


@dataclass
class Call:
    at: float
    route: str
    status: int = 0
    arg: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    fault: str = ""


class FakeDropbox(DropboxFiles):
    def __init__(self, directory: Path):
        super().__init__()
        self.ca, self._ctx = make_tls(directory)
        self._refresh: dict[str, str] = {}  # refresh token -> app key
        self._access: dict[str, bool] = {}  # access token -> expired
        self._codes: dict[str, tuple[str, str]] = {}  # code -> (app key, PKCE challenge)
        self.approvals: list[dict] = []
        self._faults: list[Fault] = []
        self._log: list[Call] = []

    # -- test controls --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def new_refresh_token(self, app_key: str = APP_KEY) -> str:
        with self._lock:
            token = "refresh-" + uuid.uuid4().hex
            self._refresh[token] = app_key
            return token

    def revoke(self, refresh_token: str) -> None:
        """Forget the refresh token and every access token issued from it."""
        with self._lock:
            self._refresh.pop(refresh_token, None)
            for token in [t for t in self._access if t.startswith(refresh_token + ":")]:
                del self._access[token]

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access = dict.fromkeys(self._access, True)

    def add_fault(self, match: str, kind: str, times: int = 1, retry_after: int = 1) -> None:
        with self._lock:
            self._faults.append(Fault(match, kind, times, retry_after))

    def calls(self, match: str = "") -> list[Call]:
        with self._lock:
            return [c for c in self._log if re.search(match, c.route)]

    def reset(self) -> None:
        """Drop faults, quota and the request log (stored files stay)."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self.quota = None

    def approve(self, authorize_url: str) -> str:
        """What the user does in the browser: approve the app and get the code to paste."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        with self._lock:
            self.approvals.append(query)
            if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                raise RouteError("PKCE required", 400)
            code = uuid.uuid4().hex
            self._codes[code] = (query["client_id"], query["code_challenge"])
            return code

    # -- server ---------------------------------------------------------------------------------

    def start(self) -> FakeDropbox:
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):  # TLS handshake in the worker thread
                try:
                    tls = fake._ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                try:
                    self.RequestHandlerClass(tls, client_address, self)
                finally:
                    tls.close()

            def handle_error(self, request, client_address):
                pass  # clients hanging up mid-request are part of the tests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                fake._handle(self)

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, headers=()) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        route = h.path.split("?")[0].removeprefix("/2/")
        call = Call(time.monotonic(), route, headers={k.lower(): v for k, v in h.headers.items()})
        with self._lock:
            self._log.append(call)
        status, payload, ctype, extra = 200, b"", "application/json", []
        try:
            if route == "/oauth2/token":
                payload = json.dumps(self._token(parse_qs(body.decode()))).encode()
            elif route == "/test/approve":
                payload, ctype = self.approve(body.decode()).encode(), "text/plain"
            else:
                self._authorize(h.headers.get("Authorization", ""))
                body = self._fault(call, body)
                arg_text = body.decode() if route not in BINARY_ROUTES else h.headers.get("Dropbox-API-Arg", "null")
                call.arg = json.loads(arg_text or "null") or {}
                if route == "files/download":
                    status, payload, ctype, extra = self._download(call.arg, h.headers.get("Range"))
                elif route in ROUTES:
                    payload = json.dumps(getattr(self, ROUTES[route])(call.arg, body)).encode()
                else:
                    raise RouteError(f"unknown route {route}", 400)
        except RouteError as err:
            status, extra = err.status, err.headers
            if isinstance(err.error, str):
                payload, ctype = err.error.encode(), "text/plain; charset=utf-8"
            elif status == 409:
                payload = json.dumps({"error_summary": error_summary(err.error), "error": err.error}).encode()
            else:
                payload = json.dumps(err.error).encode()
        except ConnectionResetError:
            h.close_connection = True
            call.status = -1
            return
        call.status = status
        self._send(h, status, payload, ctype, extra)

    def _authorize(self, header: str) -> None:
        token = header.removeprefix("Bearer ")
        with self._lock:
            expired = self._access.get(token)
        if expired is None or expired:
            tag = "expired_access_token" if expired else "invalid_access_token"
            raise RouteError({"error_summary": tag + "/..", "error": {".tag": tag}}, 401)

    def _fault(self, call: Call, body: bytes) -> bytes:
        with self._lock:
            fault = next((f for f in self._faults if f.times > 0 and re.search(f.match, call.route)), None)
            if fault is None:
                return body
            fault.times -= 1
        call.fault = fault.kind
        if fault.kind == "corrupt":
            return bytes([body[0] ^ 0xFF]) + body[1:] if body else body
        if fault.kind == "reset":
            raise ConnectionResetError
        if fault.kind == "unavailable":
            raise RouteError("service unavailable", 503)
        reason = "too_many_write_operations" if fault.kind == "write_ops" else "too_many_requests"
        raise RouteError({"error_summary": reason + "/..",
                          "error": {"reason": {".tag": reason}, "retry_after": fault.retry_after}},
                         429, [("Retry-After", str(fault.retry_after))])

    def _token(self, form: dict) -> dict:
        form = {k: v[0] for k, v in form.items()}
        invalid = RouteError({"error": "invalid_grant", "error_description": "invalid or revoked grant"}, 400)
        with self._lock:
            if form.get("grant_type") == "refresh_token":
                refresh = form.get("refresh_token", "")
                if self._refresh.get(refresh) != form.get("client_id"):
                    raise invalid
            elif form.get("grant_type") == "authorization_code":
                app_key, challenge = self._codes.pop(form.get("code", ""), ("", ""))
                verifier = form.get("code_verifier", "").encode()
                expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
                if not app_key or app_key != form.get("client_id") or expected != challenge:
                    raise invalid
                refresh = "refresh-" + uuid.uuid4().hex
                self._refresh[refresh] = app_key
            else:
                raise RouteError({"error": "unsupported_grant_type"}, 400)
            access = f"{refresh}:{uuid.uuid4().hex}"
            self._access[access] = False
        reply = {"access_token": access, "token_type": "bearer", "expires_in": 14400}
        if form["grant_type"] == "authorization_code":
            reply.update(refresh_token=refresh, uid="4242", account_id="dbid:FAKEACCOUNT",
                         scope="files.content.read files.content.write files.metadata.read")
        return reply


@pytest.fixture(scope="session")
def dropbox_fake(tmp_path_factory) -> Iterator[FakeDropbox]:
    fake = FakeDropbox(tmp_path_factory.mktemp("dropbox-fake")).start()
    try:
        yield fake
    finally:
        fake.stop()
