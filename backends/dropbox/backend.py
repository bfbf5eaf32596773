"""Dropbox storage through the official SDK: dropbox:///Backups/office-server.

The path is inside the app's own folder (Apps/<app name>/) for an "App folder" app, or in the
whole Dropbox for a "Full Dropbox" app; which one is fixed when the app is created.

Choices, and why:
- Objects up to `upload_threshold` go in one `files/upload`; larger ones through an upload
  session (start / append_v2 / finish), always above Dropbox's 150 MiB per-call limit. A
  session's data stays invisible until `finish` commits it, so a put is atomic either way.
- CREATE is `WriteMode.add` with autorename off: another file at the path is a `conflict`
  (AlreadyExists). Dropbox treats identical contents as no conflict, which for
  content-addressed objects is the right answer. OVERWRITE is `WriteMode.overwrite`.
- Every upload call carries the SDK's `content_hash`; Dropbox refuses bytes corrupted in
  transit (`content_hash_mismatch`), which becomes a TransientError and is retried.
- `delete` looks the path up first: `files/delete_v2` on a folder would remove everything
  below it, and a key must never take a folder with it.
- Listing is `list_folder(recursive=True)` + `continue` from the deepest folder the prefix
  names; keys are Dropbox's `path_lower` below the root (keys are lowercase by contract).
- A killed upload leaves at most an uncommitted session, which Dropbox drops after 7 days:
  `list_leftovers` keeps the default (none).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Iterator
from urllib.parse import SplitResult

from dropbox import exceptions as dbx_exc
from dropbox import files

from backends.base import (
    Backend,
    Capabilities,
    ObjectInfo,
    PutMode,
    check_range,
    http_range,
    validate_key,
    validate_prefix,
)
from backends.dropbox.auth import load_token
from backends.dropbox.client import make_client
from backends.dropbox.errors import SDK_ERRORS, error_tags, translate
from backends.errors import BackendError, InvalidRange, NotFound, Unsupported

SINGLE_CALL_LIMIT = 150 << 20  # Dropbox refuses larger request bodies (payload_too_large)
CONCURRENT_UNIT = 4 << 20  # concurrent-session appends must be multiples of this
MAX_OBJECT_SIZE = (1 << 41) - (1 << 22)  # Dropbox's upload-session file size limit
_URL_OPTIONS = frozenset({"endpoint", "ca"})


class DropboxBackend(Backend):
    def __init__(self, root: str, *, app_key: str, refresh_token: str, endpoint: str | None = None,
                 ca: str | None = None, upload_threshold: int = 96 << 20, chunk_size: int = 32 << 20,
                 upload_concurrency: int = 1, list_limit: int = 2000, max_retries_on_error: int = 1,
                 timeout: float = 100.0, max_connections: int = 4):
        """`root` is a Dropbox path ("/Backups/office-server"; "" or "/" for the app folder itself).

        `upload_concurrency` > 1 uploads large objects as a concurrent session (parallel appends).
        """
        parts = [p for p in root.strip("/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise BackendError(f"invalid Dropbox path {root!r}")
        if not 0 < chunk_size <= SINGLE_CALL_LIMIT:
            raise BackendError(f"chunk_size must be between 1 byte and {SINGLE_CALL_LIMIT} bytes")
        if upload_concurrency > 1 and chunk_size % CONCURRENT_UNIT:
            raise BackendError("with upload_concurrency > 1, chunk_size must be a multiple of 4 MiB")
        self._root = "/" + "/".join(parts) if parts else ""
        self._endpoint = endpoint
        self._threshold = min(upload_threshold, SINGLE_CALL_LIMIT)
        self._chunk = chunk_size
        self._concurrency = upload_concurrency
        self._list_limit = list_limit
        self.capabilities = Capabilities(range_reads=True, conditional_put=True, object_lock=False,
                                         atomic_overwrite=True, max_connections=max_connections,
                                         preferred_object_size=64 << 20, max_object_size=MAX_OBJECT_SIZE)
        self._dbx = make_client(app_key, refresh_token, endpoint=endpoint, ca=ca,
                                max_retries_on_error=max_retries_on_error, timeout=timeout,
                                pool_size=4 * max(max_connections, upload_concurrency))

    @classmethod
    def from_url(cls, url: SplitResult, options: dict[str, str], *, token_file: str | Path | None = None,
                 **tuning) -> DropboxBackend:
        """dropbox:///PATH?endpoint=HOST:PORT&ca=FILE (the options are for tests and proxies).

        The login comes from the token file (`agent login dropbox`), never from the URL.
        """
        if url.username or url.password:
            raise BackendError("credentials never go in a dropbox:// URL; run `agent login dropbox`")
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise BackendError(f"unknown dropbox:// option(s) {', '.join(unknown)}; known: endpoint, ca")
        token = load_token(Path(token_file) if token_file else None)
        return cls(url.netloc + url.path, app_key=token["app_key"], refresh_token=token["refresh_token"],
                   endpoint=options.get("endpoint"), ca=options.get("ca"), **tuning)

    @property
    def location(self) -> str:
        return f"dropbox://{self._root or '/'}" + (f" at {self._endpoint}" if self._endpoint else "")

    def _path(self, key: str) -> str:
        return f"{self._root}/{validate_key(key)}"

    def _what(self, key: str) -> str:
        return f"dropbox://{self._root}/{key}"

    # -- writes -------------------------------------------------------------------------------

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        path = self._path(key)
        if retain_until is not None:
            raise Unsupported(f"{self.location}: Dropbox has no object retention")
        blob = data if isinstance(data, bytes) else bytes(data)
        write_mode = files.WriteMode.add if mode is PutMode.CREATE else files.WriteMode.overwrite
        try:
            if len(blob) <= self._threshold:
                self._dbx.files_upload(blob, path, mode=write_mode, autorename=False, mute=True)
            else:
                commit = files.CommitInfo(path=path, mode=write_mode, autorename=False, mute=True)
                if self._concurrency > 1:
                    self._upload_concurrent(blob, commit)
                else:
                    self._upload_sequential(blob, commit)
        except SDK_ERRORS as exc:
            raise translate(exc, self._what(key)) from exc

    def _upload_sequential(self, blob: bytes, commit: files.CommitInfo) -> None:
        view, step = memoryview(blob), self._chunk
        session = self._dbx.files_upload_session_start(bytes(view[:step]))
        offset = step
        while len(blob) - offset > step:
            cursor = files.UploadSessionCursor(session.session_id, offset)
            self._dbx.files_upload_session_append_v2(bytes(view[offset:offset + step]), cursor)
            offset += step
        cursor = files.UploadSessionCursor(session.session_id, offset)
        self._dbx.files_upload_session_finish(bytes(view[offset:]), cursor, commit)

    def _upload_concurrent(self, blob: bytes, commit: files.CommitInfo) -> None:
        """Parallel appends, then the closing one: a concurrent session takes data only in appends,
        and a closed session takes no more (the SDK's own Uploader orders them the same way)."""
        view, step = memoryview(blob), self._chunk
        session_id = self._dbx.files_upload_session_start(
            b"", session_type=files.UploadSessionType.concurrent).session_id
        *starts, last = range(0, len(blob), step)

        def send(start: int, close: bool = False) -> None:
            cursor = files.UploadSessionCursor(session_id, start)
            self._dbx.files_upload_session_append_v2(bytes(view[start:start + step]), cursor, close=close)

        if starts:
            with ThreadPoolExecutor(max_workers=min(self._concurrency, len(starts))) as pool:
                futures = [pool.submit(send, start) for start in starts]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        send(last, close=True)
        self._dbx.files_upload_session_finish(b"", files.UploadSessionCursor(session_id, len(blob)), commit)

    # -- reads --------------------------------------------------------------------------------

    def get(self, key, *, offset=0, length=None) -> bytes:
        path = self._path(key)
        span = http_range(offset, length)
        if length == 0:  # HTTP cannot ask for zero bytes
            check_range(self.head(key).size, offset, 0)
            return b""
        headers = {"Range": span} if span else {}
        try:
            try:
                meta, resp = self._dbx.files_download(path, extra_headers=headers or None)
            except dbx_exc.HttpError as exc:
                if exc.status_code != 416:
                    raise
                # a range starting at the very end is valid (b"") but HTTP cannot express it
                check_range(self.head(key).size, offset, length)
                return b""
            with contextlib.closing(resp):
                check_range(meta.size, offset, length)  # meta.size is the whole file's size
                body = resp.content
                ranged = resp.status_code == 206
        except SDK_ERRORS as exc:
            raise translate(exc, self._what(key)) from exc
        if headers and not ranged:  # a server that ignored Range sent everything
            body = body[offset:None if length is None else offset + length]
        if len(body) != (meta.size - offset if length is None else length):
            raise InvalidRange(f"{self._what(key)}: got {len(body)} bytes for range {offset}+{length}")
        return body

    def head(self, key) -> ObjectInfo:
        try:
            meta = self._dbx.files_get_metadata(self._path(key))
        except SDK_ERRORS as exc:
            raise translate(exc, self._what(key)) from exc
        if not isinstance(meta, files.FileMetadata):
            raise NotFound(self._what(key))  # a folder is not an object
        return self._info(key, meta)

    @staticmethod
    def _info(key: str, meta: files.FileMetadata) -> ObjectInfo:
        mtime = meta.server_modified.replace(tzinfo=UTC) if meta.server_modified else None
        return ObjectInfo(key, meta.size, mtime, meta.content_hash)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Files below the folder the prefix names, filtered by the prefix; folders and foreign names skipped."""
        validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        base = f"{self._root}/{folder}" if folder else self._root
        root_lower = self._root.lower() + "/"
        try:
            try:
                page = self._dbx.files_list_folder(base, recursive=True, limit=self._list_limit)
            except dbx_exc.ApiError as exc:
                if set(error_tags(exc.error)) & {"not_found", "not_folder"}:
                    return  # nothing was ever stored below this prefix
                raise
            while True:
                for entry in page.entries:
                    if not isinstance(entry, files.FileMetadata) or not entry.path_lower.startswith(root_lower):
                        continue
                    key = entry.path_lower[len(root_lower):]
                    if key.startswith(prefix) and _valid(key):
                        yield self._info(key, entry)
                if not page.has_more:
                    return
                page = self._dbx.files_list_folder_continue(page.cursor)
        except SDK_ERRORS as exc:
            raise translate(exc, f"dropbox://{base}/") from exc

    # -- deletes ------------------------------------------------------------------------------

    def delete(self, key) -> None:
        path = self._path(key)
        try:
            meta = self._dbx.files_get_metadata(path)
            if not isinstance(meta, files.FileMetadata):
                raise BackendError(f"{self._what(key)} is a folder, not an object; refusing to delete it")
            self._dbx.files_delete_v2(path)
        except SDK_ERRORS as exc:
            err = translate(exc, self._what(key))
            if not isinstance(err, NotFound):  # already gone: deleting is idempotent
                raise err from exc

    def close(self) -> None:
        self._dbx.close()


def _valid(key: str) -> bool:
    try:
        validate_key(key)
    except BackendError:
        return False
    return True
