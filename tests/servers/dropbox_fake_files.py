"""The file namespace of the Dropbox fake: the files/* routes and their error unions.

Kept apart from the HTTP, TLS, token and fault machinery in `dropbox_fake.py`. Each route takes
the decoded argument and the request body and returns the JSON result, or raises `RouteError` with
the route's error union exactly as Dropbox serialises it (the SDK decodes it into typed errors):
upload wraps a WriteError in `{"path": {"reason": ...}}`, upload_session/finish in `{"path": ...}`
or `{"lookup_failed": ...}`, delete_v2 reports `path_lookup`, the others `path`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from types import MappingProxyType

MAX_REQUEST = 150 << 20  # Dropbox's per-call body limit
BLOCK = 4 << 20  # content_hash block, and the unit of concurrent-session appends


def content_hash(data: bytes) -> str:
    """Dropbox's content hash: SHA-256 over the SHA-256 digests of the 4 MiB blocks, hex."""
    blocks = b"".join(hashlib.sha256(data[i:i + BLOCK]).digest() for i in range(0, len(data), BLOCK))
    return hashlib.sha256(blocks).hexdigest()


class RouteError(Exception):
    """A route error: HTTP status, JSON body (or text) and extra headers."""

    def __init__(self, error, status: int = 409, headers: tuple = ()):
        super().__init__(error)
        self.status, self.error, self.headers = status, error, list(headers)


def error_summary(error: dict) -> str:
    """Dropbox's `error_summary`: the union's tags joined by '/' ("path/conflict/file/..")."""
    tags, item = [], error
    while isinstance(item, dict) and ".tag" in item:
        tags.append(item[".tag"])
        item = item.get(item[".tag"], next((v for k, v in item.items() if isinstance(v, dict)), None))
    return "/".join(tags) + "/.."


@dataclass
class _File:
    display: str
    data: bytes
    rev: str
    modified: str
    id: str
    hash: str


@dataclass
class _Session:
    concurrent: bool
    data: bytearray = field(default_factory=bytearray)
    chunks: dict = field(default_factory=dict)
    closed: bool = False


class DropboxFiles:
    """Files, implicit folders, upload sessions and list cursors of one Dropbox account."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.files: dict[str, _File] = {}
        self.folders: dict[str, str] = {"": ""}  # path_lower -> path_display; "" is the root
        self._sessions: dict[str, _Session] = {}
        self._cursors: dict[str, tuple[list, int]] = {}
        self.quota: int | None = None  # total bytes the account may hold

    def _meta(self, low: str) -> dict:
        if low in self.folders:
            display = self.folders[low]
            return {".tag": "folder", "name": display.rsplit("/", 1)[-1], "path_lower": low,
                    "path_display": display, "id": "id:" + hashlib.md5(low.encode()).hexdigest()[:16]}
        f = self.files[low]
        return {".tag": "file", "name": f.display.rsplit("/", 1)[-1], "path_lower": low, "path_display": f.display,
                "id": f.id, "client_modified": f.modified, "server_modified": f.modified, "rev": f.rev,
                "size": len(f.data), "is_downloadable": True, "content_hash": f.hash}

    def _lookup(self, path: str, wrap: str) -> str:
        low = path.lower()
        if low not in self.files and low not in self.folders:
            raise RouteError({".tag": wrap, wrap: {".tag": "not_found"}})
        return low

    def _commit(self, commit: dict, data: bytes) -> dict:
        """Store a file as WriteMode says, or raise the WriteError union (unwrapped)."""
        path, mode = commit["path"], commit.get("mode", "add")
        mode = mode if isinstance(mode, str) else mode[".tag"]
        low = path.lower()
        if not low.startswith("/") or "//" in low or low.endswith("/"):
            raise RouteError({".tag": "malformed_path"})
        if low in self.folders:
            raise RouteError({".tag": "conflict", "conflict": {".tag": "folder"}})
        parents = [low[:i] for i in range(1, len(low)) if low[i] == "/"]
        if any(p in self.files for p in parents):
            raise RouteError({".tag": "conflict", "conflict": {".tag": "file_ancestor"}})
        old = self.files.get(low)
        if old is not None and old.data == data:
            return self._meta(low)  # identical contents: nothing is written, no conflict
        if old is not None and mode != "overwrite":
            raise RouteError({".tag": "conflict", "conflict": {".tag": "file"}})
        used = sum(len(f.data) for f in self.files.values()) - (len(old.data) if old else 0)
        if self.quota is not None and used + len(data) > self.quota:
            raise RouteError({".tag": "insufficient_space"})
        for p in parents:
            self.folders.setdefault(p, path[:len(p)])
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        file_id = old.id if old else "id:" + uuid.uuid4().hex
        self.files[low] = _File(path, data, uuid.uuid4().hex[:16], now, file_id, content_hash(data))
        return self._meta(low)

    @staticmethod
    def _check_body(arg: dict, body: bytes) -> None:
        if len(body) > MAX_REQUEST:
            raise RouteError({".tag": "payload_too_large"})
        if arg.get("content_hash") is not None and arg["content_hash"] != content_hash(body):
            raise RouteError({".tag": "content_hash_mismatch"})

    def upload(self, arg: dict, body: bytes) -> dict:
        self._check_body(arg, body)
        with self._lock:
            try:
                return self._commit(arg, body)
            except RouteError as err:
                raise RouteError({".tag": "path", "reason": err.error, "upload_session_id": ""}) from None

    def session_start(self, arg: dict, body: bytes) -> dict:
        self._check_body(arg, body)
        concurrent = (arg.get("session_type") or {}).get(".tag") == "concurrent"
        if concurrent and body:
            raise RouteError({".tag": "concurrent_session_data_not_allowed"})
        if concurrent and arg.get("close"):
            raise RouteError({".tag": "concurrent_session_close_not_allowed"})
        session_id = uuid.uuid4().hex
        with self._lock:
            self._sessions[session_id] = _Session(concurrent, bytearray(body), closed=bool(arg.get("close")))
        return {"session_id": session_id}

    def _append(self, session: _Session, offset: int, body: bytes, close: bool) -> None:
        """Add data at `offset` or raise the UploadSessionLookupError union."""
        if session.closed:
            raise RouteError({".tag": "closed"})
        if not session.concurrent:
            if offset != len(session.data):
                raise RouteError({".tag": "incorrect_offset", "correct_offset": len(session.data)})
            session.data += body
        else:
            if offset % BLOCK:
                raise RouteError({".tag": "concurrent_session_invalid_offset"})
            if len(body) % BLOCK and not close:
                raise RouteError({".tag": "concurrent_session_invalid_data_size"})
            session.chunks[offset] = body
        session.closed = close

    def session_append(self, arg: dict, body: bytes) -> None:
        self._check_body(arg, body)
        cursor = arg["cursor"]
        with self._lock:
            session = self._sessions.get(cursor["session_id"])
            if session is None:
                raise RouteError({".tag": "not_found"})
            self._append(session, cursor["offset"], body, bool(arg.get("close")))
        return None

    def session_finish(self, arg: dict, body: bytes) -> dict:
        self._check_body(arg, body)
        cursor = arg["cursor"]
        with self._lock:
            session = self._sessions.get(cursor["session_id"])
            try:
                if session is None:
                    raise RouteError({".tag": "not_found"})
                if session.concurrent:
                    data = self._assemble(session, cursor["offset"], body)
                else:
                    self._append(session, cursor["offset"], body, False)
                    data = bytes(session.data)
            except RouteError as err:
                err.error = err.error if err.error[".tag"].startswith("concurrent") else \
                    {".tag": "lookup_failed", "lookup_failed": err.error}
                raise
            try:
                meta = self._commit(arg["commit"], data)
            except RouteError as err:
                raise RouteError({".tag": "path", "path": err.error}) from None
            del self._sessions[cursor["session_id"]]
            return meta

    @staticmethod
    def _assemble(session: _Session, offset: int, body: bytes) -> bytes:
        if body:
            raise RouteError({".tag": "concurrent_session_data_not_allowed"})
        if not session.closed:
            raise RouteError({".tag": "concurrent_session_not_closed"})
        data = bytearray()
        for start in sorted(session.chunks):
            if start != len(data):
                raise RouteError({".tag": "concurrent_session_missing_data"})
            data += session.chunks[start]
        if offset != len(data):
            raise RouteError({".tag": "incorrect_offset", "correct_offset": len(data)})
        return bytes(data)

    def _download(self, arg: dict, range_header: str | None):
        with self._lock:
            low = self._lookup(arg["path"], "path")
            if low not in self.files:
                raise RouteError({".tag": "path", "path": {".tag": "not_file"}})
            data, meta = self.files[low].data, self._meta(low)
        headers = [("Dropbox-API-Result", json.dumps(meta))]
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header or "")
        if not m:
            return 200, data, "application/octet-stream", headers
        first, last = m.groups()
        start = int(first) if first else max(len(data) - int(last), 0)
        end = min(int(last), len(data) - 1) if first and last else len(data) - 1
        if start >= len(data) or start > end:
            raise RouteError("range not satisfiable", 416)
        headers.append(("Content-Range", f"bytes {start}-{end}/{len(data)}"))
        return 206, data[start:end + 1], "application/octet-stream", headers

    def get_metadata(self, arg: dict, body: bytes) -> dict:
        with self._lock:
            return self._meta(self._lookup(arg["path"], "path"))

    def delete(self, arg: dict, body: bytes) -> dict:
        with self._lock:
            low = self._lookup(arg["path"], "path_lookup")
            meta = self._meta(low)
            for name in [n for n in self.files if n == low or n.startswith(low + "/")]:
                del self.files[name]
            for name in [n for n in self.folders if n == low or n.startswith(low + "/")]:
                del self.folders[name]
            return {"metadata": meta}

    def list_folder(self, arg: dict, body: bytes) -> dict:
        path, recursive = arg.get("path", "").lower(), bool(arg.get("recursive"))
        with self._lock:
            if path in self.files:
                raise RouteError({".tag": "path", "path": {".tag": "not_folder"}})
            self._lookup(path, "path")
            names = sorted(n for n in {*self.files, *self.folders}
                           if n.startswith(path + "/") and (recursive or "/" not in n[len(path) + 1:]))
            entries = [self._meta(n) for n in names]
            return self._page(entries, min(int(arg.get("limit") or 2000), 2000))

    def _page(self, entries: list, limit: int) -> dict:
        cursor = uuid.uuid4().hex
        self._cursors[cursor] = (entries[limit:], limit)
        return {"entries": entries[:limit], "cursor": cursor, "has_more": len(entries) > limit}

    def list_folder_continue(self, arg: dict, body: bytes) -> dict:
        with self._lock:
            rest = self._cursors.pop(arg.get("cursor", ""), None)
            if rest is None:
                raise RouteError({".tag": "reset"})
            return self._page(*rest)


BINARY_ROUTES = frozenset({"files/upload", "files/upload_session/start", "files/upload_session/append_v2",
                           "files/upload_session/finish", "files/download"})  # argument in Dropbox-API-Arg
ROUTES = MappingProxyType({
    "files/upload": "upload", "files/upload_session/start": "session_start",
    "files/upload_session/append_v2": "session_append", "files/upload_session/finish": "session_finish",
    "files/get_metadata": "get_metadata", "files/delete_v2": "delete", "files/list_folder": "list_folder",
    "files/list_folder/continue": "list_folder_continue"})  # files/download is served separately
