"""A stdlib fake of the Microsoft Graph endpoints the OneDrive backend uses, and of the Entra ID
endpoints msal uses, so both official SDKs run unchanged over real HTTP on loopback.

No emulator exists (../shared/recipes/backends.md section 5). Faithful where the backend relies on it:
- Graph, http://127.0.0.1:P/v1.0: bearer tokens it issued; `/me/drive`, `special/approot`; path
  addressing `{id}:/a/b:` percent-decoded (Kiota encodes the whole segment); item GET/DELETE;
  children paged by `$top` with an absolute `@odata.nextLink`; PUT content with conflictBehavior;
  upload sessions (pre-authenticated URL that refuses Authorization, Content-Range checks,
  fragments in multiples of 320 KiB, 202 + nextExpectedRanges, 201/200 at the end, the conflict
  checked again at commit, GET for status, DELETE to cancel); content GET answered with a 302 to
  a download URL that honours Range (206, 416). Errors are `{"error": {"code", "message"}}`.
- Entra ID, https://127.0.0.1:Q/{tenant} (msal insists on https; a throwaway certificate):
  OpenID configuration, device-code flow (a test approves the code as the user would), refresh
  tokens; a revoked refresh token answers `invalid_grant` like an expired sign-in.
- Faults on demand: requests matching a regex on "METHOD /path?query" get a canned error
  (429/503 with Retry-After, 507 insufficientStorage...), before or after the fake acted on them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.servers.onedrive_drive import Drive, GraphError, not_found, now_iso
from tests.servers.onedrive_identity import identity_reply, tls_context

FRAGMENT = 320 << 10  # upload-session fragments are multiples of this, except the last
MAX_FRAGMENT = 60 << 20
MAX_SIMPLE_UPLOAD = 250 << 20
_ITEM = re.compile(r"^/v1\.0/drives/(?P<drive>[^/]+)/items/(?P<ref>[^/:]+)(?::(?P<path>/[^:]*):)?"
                   r"(?P<action>/[A-Za-z]+)?$")
_CODES = {429: "activityLimitReached", 500: "generalException", 503: "serviceNotAvailable",
          507: "insufficientStorage", 509: "bandwidthLimitExceeded"}


@dataclass
class Fault:
    match: str
    status: int = 429
    times: int = 1
    retry_after: float | None = None
    code: str | None = None
    after: bool = False  # act on the request first (keep an upload fragment), then answer the error
    skip: int = 0  # let this many matching requests through first
    action: Callable[[], None] | None = None  # run (under the lock) when it fires; status 0 = no error


@dataclass
class Logged:
    method: str
    path: str
    status: int
    content_range: str = ""


class OneDriveFake:
    client_id = "00000000-0000-0000-0000-00000000c1d0"

    def __init__(self, tls_dir: Path, *, page_limit: int = 200) -> None:
        self.lock = threading.RLock()
        self.drive = Drive()
        self.page_limit = page_limit
        self.sessions: dict[str, dict] = {}
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.access_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self.refresh_tokens: set[str] = set()
        self.device_codes: dict[str, dict] = {}
        self.access_token_lifetime = 3600
        self.create_parents = True  # uploads create missing parent folders, as OneDrive does
        self._graph = self._serve(None)
        self._identity = self._serve(tls_context(tls_dir))
        self.ca_file = str(tls_dir / "ca.pem")
        self.graph_url = f"http://127.0.0.1:{self._graph.server_port}/v1.0"
        self.authority = f"https://127.0.0.1:{self._identity.server_port}/common"

    def _serve(self, tls: ssl.SSLContext | None) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        server.fake = self  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True, name="onedrive-fake").start()
        return server

    def close(self) -> None:
        for server in (self._graph, self._identity):
            server.shutdown()
            server.server_close()

    # -- test controls --------------------------------------------------------------------------

    def add_fault(self, match: str, status: int = 429, **kwargs) -> None:
        with self.lock:
            self.faults.append(Fault(match, status, **kwargs))

    def requests(self, pattern: str = "") -> list[Logged]:
        """Logged requests whose "METHOD /path?query" matches `pattern`, oldest first."""
        with self.lock:
            return [e for e in self.log if re.search(pattern, f"{e.method} {e.path}")]

    def approve(self, user_code: str) -> None:
        """What the user does in the browser with the code from the device-code message."""
        with self.lock:
            for flow in self.device_codes.values():
                flow["approved"] |= flow["user_code"] == user_code

    def expire_access_token(self, token: str) -> None:
        with self.lock:
            self.access_tokens[token] = 0.0

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    def read(self, path: str, *, whole_drive: bool = False) -> bytes | None:
        """The bytes of the file at `path` under the app folder (or the drive root), or None."""
        with self.lock:
            base = self.drive.root if whole_drive else self.drive.app_folder()
            item = self.drive.resolve(base.id, path)
            return None if item is None or item.folder else item.data

    def _take_fault(self, line: str) -> Fault | None:
        """The first due fault matching `line`; every matching fault counts the request for `skip`."""
        chosen = None
        with self.lock:
            for fault in self.faults:
                if fault.times <= 0 or not re.search(fault.match, line):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                elif chosen is None:
                    fault.times -= 1
                    chosen = fault
            if chosen is not None and chosen.action is not None:
                chosen.action()
        return chosen if chosen is not None and chosen.status else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: avoid ~40 ms stalls

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        fake: OneDriveFake = self.server.fake  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = fake._take_fault(f"{self.command} {self.path}")
        try:
            if fault is not None and not fault.after:
                raise _fault_error(fault)
            with fake.lock:
                status, headers, payload = self._route(fake, body)
            if fault is not None:
                raise _fault_error(fault)
        except GraphError as exc:
            status, headers = exc.status, exc.headers
            payload = {"error": {"code": exc.code, "message": str(exc),
                                 "innerError": {"date": now_iso(), "request-id": secrets.token_hex(8)}}}
        with fake.lock:
            fake.log.append(Logged(self.command, self.path, status, self.headers.get("Content-Range", "")))
        if isinstance(payload, dict):
            payload, headers = json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_PUT = do_POST = do_DELETE = do_GET

    def _route(self, fake: OneDriveFake, body: bytes) -> tuple[int, dict, dict | bytes]:
        url = urlsplit(self.path)
        path, query = unquote(url.path), {k: v[-1] for k, v in parse_qs(url.query).items()}
        if path.startswith("/upload/"):
            return self._upload(fake, path[len("/upload/"):], body)
        if path.startswith("/dl/"):
            return self._download(fake, path[len("/dl/"):])
        if "/oauth2/v2.0/" in path or path.endswith("/.well-known/openid-configuration"):
            return identity_reply(fake, f"https://{self.headers['Host']}", path, body)
        auth = self.headers.get("Authorization", "")
        if fake.access_tokens.get(auth[7:] if auth.startswith("Bearer ") else "", 0) < time.time():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        drive = fake.drive
        if path == "/v1.0/me/drive" and self.command == "GET":
            return 200, {}, {"id": drive.id, "driveType": "personal", "quota": {"total": 1 << 40, "state": "normal"}}
        if self.command == "GET" and path in ("/v1.0/me/drive/special/approot",
                                              f"/v1.0/drives/{drive.id}/special/approot"):
            return 200, {}, drive.to_json(drive.app_folder())
        match = _ITEM.match(path)
        if not match or match["drive"] != drive.id:
            raise GraphError(400, "invalidRequest", f"unsupported route {self.command} {path}")
        return self._item(fake, match["ref"], match["path"], match["action"] or "", query, body)

    def _item(self, fake: OneDriveFake, ref: str, path: str | None, action: str, query: dict, body: bytes):
        drive = fake.drive
        if self.command == "PUT" and action == "/content":
            if len(body) > MAX_SIMPLE_UPLOAD:
                raise GraphError(413, "requestTooLarge", "simple upload is limited to 250 MB; use an upload session")
            self._check_parent(fake, ref, path)
            stored, created = drive.store(ref, path, body, query.get("@microsoft.graph.conflictBehavior", "replace"))
            return (201 if created else 200), {}, drive.to_json(stored)
        item = drive.resolve(ref, path)
        if self.command == "POST" and action == "/createUploadSession":
            conflict = (json.loads(body or b"{}").get("item") or {}).get("@microsoft.graph.conflictBehavior", "replace")
            if item is not None and (conflict == "fail" or item.folder):
                raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
            self._check_parent(fake, ref, path)
            sid = secrets.token_urlsafe(12)
            expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            fake.sessions[sid] = {"ref": ref, "path": path, "conflict": conflict, "data": bytearray(),
                                  "expires": expires}
            return 200, {}, {"uploadUrl": f"http://{self.headers['Host']}/upload/{sid}", "expirationDateTime": expires,
                             "nextExpectedRanges": ["0-"]}
        if item is None:
            raise not_found()
        if self.command == "GET" and action == "":
            return 200, {}, drive.to_json(item)
        if self.command == "DELETE" and action == "":
            drive.delete(item)
            return 204, {}, b""
        if self.command == "GET" and action == "/content" and not item.folder:
            return 302, {"Location": f"http://{self.headers['Host']}/dl/{item.id}?tempauth={secrets.token_hex(8)}"}, b""
        if self.command == "POST" and action == "/children" and item.folder:
            new = json.loads(body or b"{}")
            if "folder" not in new or not new.get("name"):
                raise GraphError(400, "invalidRequest", "only folders are created this way")
            if new.get("@microsoft.graph.conflictBehavior", "fail") == "fail" and new["name"].lower() in item.children:
                raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
            return 201, {}, drive.to_json(drive._folder(item, new["name"]))
        if self.command == "GET" and action == "/children" and item.folder:
            top = min(int(query.get("$top", fake.page_limit)), fake.page_limit)
            start = int(query.get("$skiptoken", 0))
            children = drive.children(item)
            page: dict = {"value": [drive.to_json(c) for c in children[start:start + top]]}
            if start + top < len(children):
                page["@odata.nextLink"] = (f"http://{self.headers['Host']}/v1.0/drives/{drive.id}/items/{item.id}"
                                           f"/children?$top={top}&$skiptoken={start + top}")
            return 200, {}, page
        raise GraphError(400, "invalidRequest", f"unsupported {self.command} {action or 'item'} here")

    @staticmethod
    def _check_parent(fake: OneDriveFake, ref: str, path: str | None) -> None:
        parent = (path or "").rstrip("/").rpartition("/")[0]
        if not fake.create_parents and fake.drive.resolve(ref, parent) is None:
            raise not_found()

    def _upload(self, fake: OneDriveFake, sid: str, body: bytes):
        if "Authorization" in self.headers:  # documented: the URL is pre-authenticated, the header may fail
            raise GraphError(401, "unauthenticated", "do not send Authorization to an upload URL")
        session = fake.sessions.get(sid)
        if session is None:
            raise GraphError(404, "itemNotFound", "The upload session was not found (expired or completed).")
        data: bytearray = session["data"]
        if self.command == "GET":
            return 200, {}, {"expirationDateTime": session["expires"], "nextExpectedRanges": [f"{len(data)}-"]}
        if self.command == "DELETE":
            del fake.sessions[sid]
            return 204, {}, b""
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", self.headers.get("Content-Range", ""))
        if self.command != "PUT" or not match:
            raise GraphError(400, "invalidRequest", "a fragment needs Content-Range: bytes a-b/total")
        start, end, total = map(int, match.groups())
        if start != len(data) or len(body) != end - start + 1 or end >= total:
            raise GraphError(416, "invalidRange", f"the next expected range starts at {len(data)}")
        final = end + 1 == total
        if len(body) > MAX_FRAGMENT or (not final and len(body) % FRAGMENT):
            raise GraphError(400, "invalidRequest", "fragments must be multiples of 320 KiB and at most 60 MiB")
        data += body
        if not final:
            return 202, {}, {"expirationDateTime": session["expires"], "nextExpectedRanges": [f"{len(data)}-"]}
        del fake.sessions[sid]
        stored, created = fake.drive.store(session["ref"], session["path"], bytes(data), session["conflict"])
        return (201 if created else 200), {}, fake.drive.to_json(stored)

    def _download(self, fake: OneDriveFake, ident: str):
        item = fake.drive.items.get(ident)
        if item is None or item.folder:
            raise not_found()
        size, spec = len(item.data), self.headers.get("Range")
        if spec is None:
            return 200, {"Content-Type": "application/octet-stream"}, item.data
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec)
        if not match or int(match[1]) >= size:
            return 416, {"Content-Range": f"bytes */{size}"}, b""
        start, end = int(match[1]), min(int(match[2] or size - 1), size - 1)
        return 206, {"Content-Range": f"bytes {start}-{end}/{size}", "Content-Type": "application/octet-stream"}, \
            item.data[start:end + 1]


def _fault_error(fault: Fault) -> GraphError:
    headers = {} if fault.retry_after is None else {"Retry-After": str(int(fault.retry_after))}
    return GraphError(fault.status, fault.code or _CODES.get(fault.status, "generalException"), "injected", headers)


@pytest.fixture(scope="session")
def onedrive_fake(tmp_path_factory) -> Iterator[OneDriveFake]:
    """The fake, in-process on free ports for the whole session (state is shared: use fresh folders)."""
    fake = OneDriveFake(tmp_path_factory.mktemp("onedrive-tls"))
    try:
        yield fake
    finally:
        fake.close()
