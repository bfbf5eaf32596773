"""Google Drive (My Drive or a shared drive) through google-api-python-client, Drive API v3.

Choices, and why:
- A key `data/ab/<id>` is a file `<id>` in folder `data/ab` under the repository folder; folders
  are created on demand and ids cached (paths.py).
- CREATE: Drive has no "create if absent" and allows duplicate names. The name is checked
  first; after the upload the name is listed again and the oldest item wins (paths.Tree.settle);
  a losing writer deletes its copy and gets AlreadyExists. This is exact when Drive's listing
  shows a completed create within `settle_delay`; the worst case otherwise is a duplicate that
  the next writer or `delete` removes, never a lost winner.
- OVERWRITE uploads new content into the existing file id, so readers never see the key missing.
- Only the retry middleware retries whole calls (with Retry-After); the SDK only resends a
  failed chunk inside a resumable session (upload.py).
- Retention (object lock) does not exist on Drive: asking for it is Unsupported.
- A killed resumable upload leaves only its session, which Drive drops after a week, never a
  file: `list_leftovers` keeps the default (none).
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterator, TypeVar
from urllib.parse import SplitResult, unquote

from googleapiclient.errors import HttpError

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
from backends.errors import AlreadyExists, BackendError, InvalidRange, NotFound, Unsupported
from backends.gdrive.auth import load_credentials
from backends.gdrive.client import FILE_FIELDS, DriveClient
from backends.gdrive.errors import SDK_ERRORS, translate
from backends.gdrive.paths import Path, Tree, is_missing
from backends.gdrive.upload import Uploader

T = TypeVar("T")
MAX_OBJECT_SIZE = 5 * 1000 ** 4  # Drive's 5 TB per file
_URL_OPTIONS = {"root", "endpoint", "token_file"}


def _split(key: str) -> tuple[Path, str]:
    *folders, name = validate_key(key).split("/")
    return tuple(folders), name


def _info(key: str, entry: dict) -> ObjectInfo:
    mtime = datetime.fromisoformat(entry["modifiedTime"]) if entry.get("modifiedTime") else None
    return ObjectInfo(key, int(entry.get("size", 0)), mtime, entry.get("md5Checksum"))


class GDriveBackend(Backend):
    def __init__(self, folder: str, *, root: str | None = None, endpoint: str | None = None,
                 credentials=None, token_file: str | None = None, resumable_threshold: int = 8 << 20,
                 chunk_size: int = 16 << 20, chunk_retries: int = 3, settle_delay: float = 0.2,
                 list_page_size: int = 1000, max_connections: int = 4, timeout: float = 120.0) -> None:
        """`folder` is a path below My Drive (or below the folder `root`, e.g. a shared drive's id).

        `credentials` lets tests and embedders pass google-auth credentials; by default a service
        account (AGENT_GDRIVE_SERVICE_ACCOUNT) or the token file of `agent login gdrive` is used.
        """
        base = tuple(p for p in folder.strip("/").split("/") if p)
        if any(p in (".", "..") for p in base):
            raise BackendError(f"invalid Google Drive folder {folder!r}")
        if not base and not root:
            raise BackendError("a gdrive:// URL needs a folder (gdrive://Backups/office-server) "
                               "or ?root=<folder id>")
        self._root = root
        self._endpoint = endpoint
        self.capabilities = Capabilities(
            range_reads=True, conditional_put=True, object_lock=False, atomic_overwrite=True,
            max_connections=max_connections, preferred_object_size=64 << 20, max_object_size=MAX_OBJECT_SIZE)
        if credentials is None:  # a test endpoint serves Google's token endpoint too
            token_uri = endpoint.rstrip("/") + "/token" if endpoint else None
            credentials = load_credentials(token_file, token_uri=token_uri)
        self._client = DriveClient(credentials, endpoint=endpoint, timeout=timeout)
        self._tree = Tree(self._client, root or "root", base, page_size=list_page_size, settle_delay=settle_delay)
        self._upload = Uploader(self._client, resumable_threshold=resumable_threshold, chunk_size=chunk_size,
                                chunk_retries=chunk_retries)

    @classmethod
    def from_url(cls, url: SplitResult, options: dict[str, str], **tuning) -> GDriveBackend:
        """gdrive://Folder/Sub?root=<folder or shared drive id>&endpoint=<test server>&token_file=<path>

        `tuning` passes constructor arguments that have no place in a URL (tests lower thresholds).
        """
        if "@" in url.netloc:
            raise BackendError("credentials never go in a gdrive:// URL; run `agent login gdrive` "
                               "or set AGENT_GDRIVE_SERVICE_ACCOUNT")
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise BackendError(f"unknown gdrive:// option(s) {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(_URL_OPTIONS))}")
        folder = unquote(f"{url.netloc}/{url.path.lstrip('/')}")
        return cls(folder, root=options.get("root"), endpoint=options.get("endpoint"),
                   token_file=options.get("token_file"), **tuning)

    @property
    def location(self) -> str:
        where = "/".join(self._tree.base)
        return (f"gdrive://{where}" + (f"?root={self._root}" if self._root else "")
                + (f" at {self._endpoint}" if self._endpoint else ""))

    def _what(self, key: str = "") -> str:
        return f"gdrive://{'/'.join(self._tree.base + ((key,) if key else ()))}"

    def _run(self, key: str, fn: Callable[[bool], T]) -> T:
        """fn(use_cache), then once more without the cache if something was missing: a cached id
        may be gone (404), or a cached folder replaced by another machine (the file seems absent)."""
        try:
            try:
                return fn(True)
            except (HttpError, NotFound) as exc:
                if isinstance(exc, HttpError) and not is_missing(exc):
                    raise
                folders, name = _split(key)
                self._tree.cache.forget(self._tree.base + folders + (name,))
                return fn(False)
        except BackendError:
            raise
        except SDK_ERRORS as exc:
            raise translate(exc, self._what(key), key) from exc

    # -- writes -------------------------------------------------------------------------------

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        folders, name = _split(key)
        if retain_until is not None:
            raise Unsupported(f"{self.location}: Google Drive has no retention (object lock)")
        blob = data if isinstance(data, bytes) else bytes(data)
        if mode is PutMode.CREATE:
            self._run(key, lambda _: self._create(key, folders, name, blob))
        else:
            self._run(key, lambda use_cache: self._overwrite(folders, name, blob, use_cache))

    def _create(self, key: str, folders: Path, name: str, blob: bytes) -> None:
        parent = self._tree.folder(folders, create=True)
        if self._tree.children(parent, name, folders=False):
            raise AlreadyExists(key)
        mine = self._upload.create(parent, name, blob)["id"]
        winner = self._tree.settle(parent, name, mine, folders=False)
        if winner is None:  # ours, then deleted by someone else: the put itself happened
            return
        self._tree.cache.remember(self._tree.base + folders + (name,), winner["id"], is_folder=False)
        if winner["id"] != mine:
            raise AlreadyExists(key)

    def _overwrite(self, folders: Path, name: str, blob: bytes, use_cache: bool) -> None:
        file_id, _ = self._tree.lookup(folders, name, use_cache=use_cache)
        if file_id:
            self._upload.replace(file_id, blob)
            return
        parent = self._tree.folder(folders, create=True)
        mine = self._upload.create(parent, name, blob)["id"]
        winner = self._tree.settle(parent, name, mine, folders=False) or {"id": mine}
        if winner["id"] != mine:  # a rival created the name too: ours is the later write
            self._upload.replace(winner["id"], blob)
        self._tree.cache.remember(self._tree.base + folders + (name,), winner["id"], is_folder=False)

    # -- reads --------------------------------------------------------------------------------

    def _file_id(self, key: str, use_cache: bool) -> str:
        folders, name = _split(key)
        file_id, _ = self._tree.lookup(folders, name, use_cache=use_cache)
        if file_id is None:
            raise NotFound(key)
        return file_id

    def get(self, key, *, offset=0, length=None) -> bytes:
        validate_key(key)
        span = http_range(offset, length)
        if length == 0:  # HTTP cannot ask for zero bytes
            check_range(self.head(key).size, offset, 0)
            return b""

        def download(use_cache: bool) -> bytes:
            request = self._client.files().get_media(fileId=self._file_id(key, use_cache), supportsAllDrives=True)
            if span:
                request.headers["Range"] = span
            return request.execute()

        try:
            body = self._run(key, download)
        except InvalidRange:
            check_range(self.head(key).size, offset, length)  # a range starting at the end is b""
            return b""
        if length is not None and len(body) != length:  # servers shorten a range that runs past the end
            raise InvalidRange(f"range {offset}+{length} past end of {key}")
        return body

    def head(self, key) -> ObjectInfo:
        def fetch(use_cache: bool) -> ObjectInfo:
            folders, name = _split(key)
            file_id, fresh = self._tree.lookup(folders, name, use_cache=use_cache)
            if file_id is None:
                raise NotFound(key)
            entry = fresh or self._client.files().get(fileId=file_id, fields=FILE_FIELDS,
                                                      supportsAllDrives=True).execute()
            return _info(key, entry)

        return self._run(key, fetch)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Walks the folders below the prefix; names that are not valid keys (Google Docs, files
        a user dropped in by hand) are skipped."""
        validate_prefix(prefix)
        folder_part, _, name_prefix = prefix.rpartition("/")
        folders: Path = tuple(folder_part.split("/")) if folder_part else ()
        seen: set[str] = set()
        try:
            folder_id = self._tree.folder(folders, create=False)
            if folder_id is None:
                return
            for path, entry in self._tree.walk(folder_id, folders, name_prefix):
                key = "/".join(path)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    validate_key(key)
                except BackendError:
                    continue
                yield _info(key, entry)
        except BackendError:
            raise
        except SDK_ERRORS as exc:
            raise translate(exc, self._what(prefix), prefix or None) from exc

    # -- deletes ------------------------------------------------------------------------------

    def delete(self, key) -> None:
        """Deletes every item with the name: a duplicate left by a crashed racer must not
        reappear as the object once the oldest is gone."""
        folders, name = _split(key)

        def remove(use_cache: bool) -> None:
            parent = self._tree.folder(folders, create=False)
            entries = self._tree.children(parent, name, folders=False) if parent else []
            if not entries and use_cache:
                raise NotFound(key)  # perhaps a stale folder id: _run looks once more, fresh
            for entry in entries:
                self._tree.delete(entry["id"])
            self._tree.cache.forget(self._tree.base + folders + (name,), folders=False)

        self._run(key, remove)

    def close(self) -> None:
        self._client.close()
