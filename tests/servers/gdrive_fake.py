"""A stdlib fake of the Google Drive v3 endpoints the gdrive backend uses, plus Google's OAuth endpoints.

No emulator of Drive exists (see shared/recipes/backends.md section 3), so this one follows the
real service where the SDK or the backend depends on it: bearer tokens (401 `authError`), JSON
error bodies with reasons, multipart bodies with `\\n` or `\\r\\n`, resumable sessions (308 + Range,
Content-Range checks, 256 KiB chunk alignment), `alt=media` with Range (206/416), the `q` subset
the backend sends (anything else is a 400, so new syntax fails loudly), paging, `fields`,
createdTime with millisecond precision (so ties happen, as on Drive), delete 204.
On demand: `faults` (the next N requests matching a regex get a status + reason + Retry-After),
`storage_quota` (403 storageQuotaExceeded), revoked refresh tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.servers.gdrive_oauth import OAuthRoutes
from tests.servers.gdrive_wire import DriveError, now, parse_multipart, query_filter, select_fields

FOLDER = "application/vnd.google-apps.folder"
ROOT_ID = "0AFakeMyDriveRoot"
CHUNK_ALIGN = 256 << 10


@dataclass
class Fault:
    """The next `times` requests whose "METHOD /path?query" matches `match` get this error, or
    with `corrupt`, are served normally but store the content with its first byte flipped."""
    match: str
    status: int = 429
    reason: str = "rateLimitExceeded"
    retry_after: float | None = None
    times: int = 1
    corrupt: bool = False


@dataclass
class DriveState:
    tokens: set[str] = field(default_factory=lambda: {"test-token"})
    refresh_tokens: set[str] = field(default_factory=set)
    service_accounts: set[str] = field(default_factory=set)  # client emails allowed the JWT grant
    files: dict[str, dict] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    storage_quota: int | None = None  # bytes; None = unlimited
    log: list[tuple[str, int]] = field(default_factory=list)  # (request line, status)
    lock: threading.RLock = field(default_factory=threading.RLock)
    sessions: dict[str, dict] = field(default_factory=dict)
    codes: dict[str, dict] = field(default_factory=dict)

    def requests(self, pattern: str) -> list[tuple[str, int]]:
        with self.lock:
            return [entry for entry in self.log if re.search(pattern, entry[0])]

    def used(self) -> int:
        return sum(len(f["content"]) for f in self.files.values() if f["content"] is not None)

    def children(self, parent: str, name: str | None = None) -> list[dict]:
        with self.lock:
            return [f for f in self.files.values() if parent in f["parents"] and name in (None, f["name"])]


class DriveFake:
    """Owns the server thread and the state; `url` is the endpoint for `?endpoint=`."""

    def __init__(self) -> None:
        self.state = DriveState()
        self.state.files[ROOT_ID] = {"id": ROOT_ID, "name": "My Drive", "mimeType": FOLDER, "parents": [],
                                     "content": None, "createdTime": now(), "modifiedTime": now()}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self.state))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> DriveFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        """Clear faults, the quota and the request log (files stay: tests use fresh folders)."""
        with self.state.lock:
            self.state.faults.clear()
            self.state.storage_quota = None
            self.state.log.clear()


def _make_handler(state: DriveState) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass
    Handler.state = state
    return Handler


class _Handler(OAuthRoutes, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # otherwise ~40 ms per keep-alive request (Nagle + delayed ACK)
    state: DriveState
    corrupt = False  # set per request by a `corrupt` fault

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None: self._dispatch()
    def do_POST(self) -> None: self._dispatch()
    def do_PUT(self) -> None: self._dispatch()
    def do_PATCH(self) -> None: self._dispatch()
    def do_DELETE(self) -> None: self._dispatch()

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              ctype: str = "application/json") -> None:
        with self.state.lock:  # logged before the client can see the reply, so tests read a complete log
            self.state.log.append((f"{self.command} {self.path}", status))
        self.send_response(status)
        for name, value in {"Content-Type": ctype, **(headers or {})}.items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: dict, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: DriveError) -> None:
        body = {"error": {"code": err.status, "message": err.message,
                          "errors": [{"domain": "global", "reason": err.reason, "message": err.message}]}}
        self._json(body, err.status, err.headers)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.corrupt = False  # a keep-alive connection reuses this handler for the next request
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if url.path == "/token":
                return self._token()
            if url.path == "/o/oauth2/auth":
                return self._consent()
            self._check_auth_and_faults()
            self._route(url.path)
        except DriveError as err:
            self._error(err)

    def _check_auth_and_faults(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.state.tokens:
            raise DriveError(401, "authError", "Invalid Credentials", {"WWW-Authenticate": 'Bearer realm="fake"'})
        line = f"{self.command} {self.path}"
        with self.state.lock:
            for fault in self.state.faults:
                if fault.times > 0 and re.search(fault.match, line):
                    fault.times -= 1
                    if fault.corrupt:
                        self.corrupt = True
                        return
                    headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
                    raise DriveError(fault.status, fault.reason, f"injected {fault.reason}", headers)

    def _route(self, path: str) -> None:
        m = re.fullmatch(r"/(upload/)?drive/v3/files(?:/([^/]+))?", path)
        if not m:
            raise DriveError(404, "notFound", f"no route {path}")
        upload, file_id = m.group(1) is not None, m.group(2)
        if upload and "upload_id" in self.query and self.command == "PUT":
            return self._session_put()
        if upload and self.command in ("POST", "PATCH"):
            return self._upload(file_id)
        if self.command == "POST" and file_id is None:
            return self._json(select_fields(self._create(json.loads(self.body or b"{}"), None),
                                            self.query.get("fields"), ("kind", "id", "name", "mimeType")))
        if self.command == "GET" and file_id is None:
            return self._list()
        if self.command == "GET":
            return self._get(file_id)
        if self.command == "DELETE" and file_id:
            return self._delete(file_id)
        raise DriveError(400, "badRequest", f"unsupported {self.command} {path}")

    # -- files ------------------------------------------------------------------------------

    def _file(self, file_id: str) -> dict:
        file = self.state.files.get(ROOT_ID if file_id == "root" else file_id)
        if file is None:
            raise DriveError(404, "notFound", f"File not found: {file_id}.")
        return file

    def _public(self, f: dict) -> dict:
        out = {"kind": "drive#file", **{k: v for k, v in f.items() if k != "content"}, "trashed": False}
        if f["content"] is not None:
            out.update(size=str(len(f["content"])), md5Checksum=hashlib.md5(f["content"]).hexdigest())
        return out

    def _check_quota(self, delta: int) -> None:
        quota = self.state.storage_quota
        if quota is not None and delta > 0 and self.state.used() + delta > quota:
            raise DriveError(403, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded.")

    def _damage(self, content: bytes) -> bytes:
        return bytes([content[0] ^ 1]) + content[1:] if self.corrupt and content else content

    def _create(self, meta: dict, content: bytes | None) -> dict:
        content = None if content is None else self._damage(content)
        with self.state.lock:
            parents = [ROOT_ID if p == "root" else p for p in meta.get("parents") or [ROOT_ID]]
            for parent in parents:
                if self._file(parent)["mimeType"] != FOLDER:
                    raise DriveError(400, "invalidParent", "parent is not a folder")
            mime = meta.get("mimeType") or "application/octet-stream"
            if content is None and mime != FOLDER:
                content = b""
            self._check_quota(len(content or b""))
            stamp = now()
            file = {"id": secrets.token_urlsafe(24), "name": meta.get("name", "Untitled"), "mimeType": mime,
                    "parents": parents, "content": content, "createdTime": stamp, "modifiedTime": stamp,
                    "appProperties": meta.get("appProperties", {})}
            self.state.files[file["id"]] = file
            return self._public(file)

    def _replace(self, file_id: str, content: bytes) -> dict:
        content = self._damage(content)
        with self.state.lock:
            file = self._file(file_id)
            if file["mimeType"] == FOLDER:
                raise DriveError(400, "badRequest", "a folder has no content")
            self._check_quota(len(content) - len(file["content"]))
            file.update(content=content, modifiedTime=now())
            return self._public(file)

    def _finish(self, file_id: str | None, meta: dict, content: bytes) -> None:
        file = self._replace(file_id, content) if file_id else self._create(meta, content)
        self._json(select_fields(file, self.query.get("fields"), ("kind", "id", "name", "mimeType")))

    def _get(self, file_id: str) -> None:
        file = self._file(file_id)
        if self.query.get("alt") != "media":
            return self._json(select_fields(self._public(file), self.query.get("fields"),
                                            ("kind", "id", "name", "mimeType")))
        if file["content"] is None:
            raise DriveError(403, "fileNotDownloadable", "Only files with binary content can be downloaded.")
        data, header = file["content"], self.headers.get("Range")
        if not header:
            return self._send(200, data, ctype="application/octet-stream")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
        if not m or m.groups() == ("", ""):
            raise DriveError(400, "badRequest", f"bad Range {header!r}")
        if m.group(1) == "":
            start, end = max(0, len(data) - int(m.group(2))), len(data) - 1
        else:
            start, end = int(m.group(1)), min(int(m.group(2) or len(data) - 1), len(data) - 1)
        if start >= len(data) or end < start:
            raise DriveError(416, "requestedRangeNotSatisfiable", "Request range not satisfiable",
                             {"Content-Range": f"bytes */{len(data)}"})
        self._send(206, data[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"},
                   "application/octet-stream")

    def _delete(self, file_id: str) -> None:
        with self.state.lock:
            doomed = [self._file(file_id)["id"]]
            for current in doomed:  # Drive deletes a folder's descendants with it
                doomed += [f["id"] for f in self.state.files.values() if current in f["parents"]]
            for gone in doomed:
                self.state.files.pop(gone, None)
        self._send(204, ctype="text/plain")

    def _list(self) -> None:
        keep = query_filter(self.query.get("q", ""), ROOT_ID)
        size = int(self.query.get("pageSize", 100))
        if not 1 <= size <= 1000:
            raise DriveError(400, "invalid", "Invalid Value: pageSize")
        start = int(base64.urlsafe_b64decode(self.query["pageToken"])) if self.query.get("pageToken") else 0
        with self.state.lock:
            matches = sorted((f for f in self.state.files.values() if keep(f)), key=lambda f: f["id"])
            page = [self._public(f) for f in matches[start:start + size]]
        reply = {"kind": "drive#fileList", "incompleteSearch": False, "files": page}
        if start + size < len(matches):
            reply["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        if "fields" in self.query:
            return self._json(select_fields(reply, self.query["fields"], ()))
        self._json({**reply, "files": [select_fields(f, None, ("kind", "id", "name", "mimeType")) for f in page]})

    # -- uploads ----------------------------------------------------------------------------

    def _upload(self, file_id: str | None) -> None:
        kind = self.query.get("uploadType")
        if self.command == "PATCH" and file_id is None or self.command == "POST" and file_id is not None:
            raise DriveError(400, "badRequest", "create is POST /files, update is PATCH /files/{id}")
        if kind == "media":
            return self._finish(file_id, {}, self.body)
        if kind == "multipart":
            meta, content = parse_multipart(self.body, self.headers.get("Content-Type", ""))
            return self._finish(file_id, meta, content)
        if kind != "resumable":
            raise DriveError(400, "badRequest", f"unknown uploadType {kind!r}")
        total = self.headers.get("X-Upload-Content-Length")
        with self.state.lock:
            if file_id:
                self._file(file_id)
            if total is not None:
                self._check_quota(int(total))
            sid = secrets.token_urlsafe(16)
            self.state.sessions[sid] = {"file_id": file_id, "meta": json.loads(self.body or b"{}"),
                                        "data": bytearray(), "result": None, "fields": self.query.get("fields")}
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        location = f"http://{host}/upload/drive/v3/files?" + urlencode({"uploadType": "resumable", "upload_id": sid})
        self._send(200, b"", {"Location": location}, "text/plain")

    def _session_put(self) -> None:
        with self.state.lock:
            session = self.state.sessions.get(self.query["upload_id"])
            if session is None:
                raise DriveError(404, "notFound", "upload session not found")
            m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", self.headers.get("Content-Range", ""))
            if not m:
                raise DriveError(400, "badRequest", "missing or bad Content-Range")
            first, last, total = m.groups()
            data = session["data"]
            sending = session["result"] is None and first is not None
            if sending:
                first, last = int(first), int(last)
                if first != len(data) or last - first + 1 != len(self.body):
                    raise DriveError(400, "badRequest", f"chunk {first}-{last} does not follow byte {len(data)}")
                final = total != "*" and last + 1 == int(total)
                if not final and len(self.body) % CHUNK_ALIGN:
                    raise DriveError(400, "badRequest", "a non-final chunk must be a multiple of 256 KiB")
            else:
                final = session["result"] is None and total != "*" and int(total) == len(data)  # empty last PUT
            body = bytes(data) + (self.body if sending else b"")
            if final:  # the file appears only now, whole; a refused finish (quota) leaves the session as it was
                fid = session["file_id"]
                session["result"] = self._replace(fid, body) if fid else self._create(session["meta"], body)
            data[:] = body
        if session["result"] is not None:
            return self._json(select_fields(session["result"], session["fields"], ("kind", "id", "name", "mimeType")))
        self._send(308, b"", {"Range": f"bytes=0-{len(data) - 1}"} if data else {}, "text/plain")

@pytest.fixture(scope="session")
def gdrive_fake() -> Iterator[DriveFake]:
    fake = DriveFake().start()
    try:
        yield fake
    finally:
        fake.stop()
