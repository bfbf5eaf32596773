"""OneDrive (personal and Microsoft 365) through the official msgraph-sdk.

Choices, and why:
- Objects live under a folder of the app folder (`special/approot`, i.e. Apps/<app name>), so
  the app needs only `Files.ReadWrite.AppFolder`; `?drive=me` uses the whole drive instead.
- Items are addressed by path (`{approot-id}:/Backups/x/data/ab/id:`), as Microsoft documents for
  this SDK: no path -> id cache to keep coherent. OneDrive creates missing parent folders on
  upload; if an upload still says 404, the folders are made level by level and it is sent again.
  Keys are lowercase and OneDrive is case-insensitive, so names cannot collide.
- CREATE is `@microsoft.graph.conflictBehavior=fail` (409 nameAlreadyExists), on the simple PUT
  and on the upload session, where Graph checks again when the last fragment commits.
- Up to `session_threshold` bytes go in one PUT; larger objects through an upload session and our
  fragment loop (upload.py). Either way the item appears, or is replaced, only when complete.
- The SDK's own retries are off (client.py): TransientError (429/503/509 with Retry-After, 5xx,
  resets) goes up to backends.middleware.retry, the one place that retries.
- Replies are read as plain JSON through Kiota's NativeResponseHandler (client.py says why).
- The SDK is async; one event loop in a background thread runs every call (loop.py).
- A killed upload leaves at most an upload session, which expires by itself (each has an
  expiry time) and never becomes an item: `list_leftovers` keeps the default (none).
"""

from __future__ import annotations

import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Coroutine, Iterator, TypeVar
from urllib.parse import SplitResult, urlsplit

from kiota_abstractions.authentication import AccessTokenProvider

with warnings.catch_warnings():  # the generated modules warn about their own deprecated classes on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from msgraph.generated.drives.item.items.item.children.children_request_builder import ChildrenRequestBuilder
    from msgraph.generated.drives.item.items.item.create_upload_session.create_upload_session_post_request_body import (
        CreateUploadSessionPostRequestBody,
    )
    from msgraph.generated.models.drive_item import DriveItem
    from msgraph.generated.models.drive_item_uploadable_properties import DriveItemUploadableProperties
    from msgraph.generated.models.folder import Folder

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
from backends.errors import AlreadyExists, BackendError, InvalidRange, NotFound, TransientError, Unsupported
from backends.onedrive.auth import MsalTokenProvider
from backends.onedrive.client import GRAPH_ENDPOINT, build_graph_client, build_upload_client, json_of, native, ok
from backends.onedrive.errors import translate
from backends.onedrive.loop import LoopThread
from backends.onedrive.upload import FRAGMENT_UNIT, check_fragment_size, next_offset, send_fragments

T = TypeVar("T")
_URL_OPTIONS = {"drive", "endpoint", "token_file"}
_FORBIDDEN = set('"*:<>?\\|')
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}  # plain http is allowed only for a local test server
_SELECT = ["id", "name", "size", "folder", "file", "lastModifiedDateTime", "eTag"]
MAX_OBJECT_SIZE = 250 << 30  # OneDrive's largest file


def _info(key: str, item: dict) -> ObjectInfo:
    stamp = item.get("lastModifiedDateTime")
    return ObjectInfo(key, int(item.get("size") or 0), datetime.fromisoformat(stamp) if stamp else None,
                      item.get("eTag"))


def _clean_path(path: str) -> str:
    parts = [p for p in path.strip("/").split("/") if p]
    for part in parts:
        if part in (".", "..") or _FORBIDDEN & set(part) or part != part.strip() or part.endswith("."):
            raise BackendError(f"invalid OneDrive folder name {part!r} in {path!r}")
    return "/".join(parts)


class OneDriveBackend(Backend):
    def __init__(self, path: str, *, drive: str = "approot", endpoint: str = GRAPH_ENDPOINT,
                 token_path: Path | None = None, tokens: AccessTokenProvider | None = None,
                 session_threshold: int = 4 << 20, fragment_size: int = 32 * FRAGMENT_UNIT,
                 list_page_size: int = 200, max_connections: int = 4, timeout: float = 120.0) -> None:
        """`tokens` replaces the token file (tests, or a caller with its own credentials)."""
        if drive not in ("approot", "me"):
            raise BackendError(f"drive must be approot (the app folder) or me (the whole drive), not {drive!r}")
        self._path = _clean_path(path)
        self._drive = drive
        self._endpoint = endpoint.rstrip("/")
        self._threshold = session_threshold
        self._fragment = check_fragment_size(fragment_size)
        self._page_size = list_page_size
        self.capabilities = Capabilities(
            range_reads=True, conditional_put=True, object_lock=False, atomic_overwrite=True,
            max_connections=max_connections, preferred_object_size=64 << 20, max_object_size=MAX_OBJECT_SIZE)
        endpoint_parts = urlsplit(self._endpoint)
        if endpoint_parts.scheme != "https" and endpoint_parts.hostname not in _LOOPBACK:
            raise BackendError(f"the Graph endpoint {self._endpoint!r} must use https: the token would travel in clear")
        tokens = tokens or MsalTokenProvider(token_path, [endpoint_parts.hostname or ""])
        self._loop = LoopThread("onedrive")
        try:
            self._client, self._http = self._loop.run(self._build(tokens, max_connections, timeout))
        except BaseException:
            self._loop.close()
            raise
        self._base_lock = threading.Lock()
        self._items: Any = None  # drives/{id}/items builder, set on first use
        self._base_ref = ""  # approot item id, or "root"

    async def _build(self, tokens, max_connections: int, timeout: float):
        # headroom over max_connections, so a lister next to the uploaders does not wait out a PoolTimeout
        client, http = build_graph_client(self._endpoint, tokens, max_connections=max_connections * 2,
                                          timeout=timeout)
        return client, (http, build_upload_client(max_connections=max_connections, timeout=timeout))

    @classmethod
    def from_url(cls, url: SplitResult, options: dict[str, str], **tuning) -> OneDriveBackend:
        """onedrive:///Backups/office-server?drive=approot|me&endpoint=...&token_file=..."""
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise BackendError(f"unknown onedrive:// option(s) {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(_URL_OPTIONS))}")
        token_file = options.get("token_file")
        return cls(f"{url.netloc}/{url.path}", drive=options.get("drive", "approot"),
                   endpoint=options.get("endpoint", GRAPH_ENDPOINT),
                   token_path=Path(token_file).expanduser() if token_file else None, **tuning)

    @property
    def location(self) -> str:
        where = "" if self._drive == "approot" else " (whole drive)"
        if self._endpoint != GRAPH_ENDPOINT:
            parts = urlsplit(self._endpoint)
            where += f" at {parts.scheme}://{parts.hostname}{':%d' % parts.port if parts.port else ''}"
        return f"onedrive:///{self._path}{where}"

    # -- plumbing -------------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        try:
            return self._loop.run(coro)
        except Exception as exc:
            raise translate(exc, what) from exc

    def _ready(self) -> Any:
        """Find the drive and the app folder once (two calls), on first use."""
        with self._base_lock:
            if self._items is None:
                self._items, self._base_ref = self._run(self._discover(), self.location)
            return self._items

    async def _discover(self) -> tuple[Any, str]:
        if self._drive == "me":
            drive = await json_of(self._client.me.drive.get(request_configuration=native()))
            return self._client.drives.by_drive_id(drive["id"]).items, "root"
        # /me/drive/special/approot gives the drive id and the app folder id at once (and creates it)
        special = self._client.drives.by_drive_id("me").special.by_drive_item_id("approot")
        approot = await json_of(special.with_url(f"{self._endpoint}/me/drive/special/approot").get(
            request_configuration=native()))
        drive_id = (approot.get("parentReference") or {}).get("driveId")
        if not drive_id:
            drive_id = (await json_of(self._client.me.drive.get(request_configuration=native())))["id"]
        return self._client.drives.by_drive_id(drive_id).items, approot["id"]

    def _item(self, relative: str = ""):
        """The item builder for a path under the repository folder ('' is the folder itself)."""
        items = self._ready()
        path = "/".join(p for p in (self._path, relative) if p)
        return items.by_drive_item_id(f"{self._base_ref}:/{path}:" if path else self._base_ref)

    # -- writes ---------------------------------------------------------------------------------

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        validate_key(key)
        if retain_until is not None:
            raise Unsupported(f"{self.location}: OneDrive has no object retention")
        blob = data if isinstance(data, bytes) else bytes(data)
        upload = self._put_small if len(blob) <= self._threshold else self._put_session
        behaviour = "fail" if mode is PutMode.CREATE else "replace"
        item = self._item(key)
        try:
            try:
                self._run(upload(item, blob, behaviour), key)
            except NotFound:  # OneDrive creates missing parents on upload; should it not, make them
                self._run(self._make_folders(key.split("/")[:-1]), key)
                self._run(upload(item, blob, behaviour), key)
        except AlreadyExists:
            if mode is PutMode.CREATE:
                raise
            # a replace only conflicts when a parallel upload was creating the same parent folder
            raise TransientError(f"{key}: conflict while creating its folder; try again") from None

    async def _make_folders(self, names: list[str]) -> None:
        """Create the repository folder and `names` below it, level by level (409 = already there)."""
        parts = [p for p in self._path.split("/") if p] + names
        for depth, name in enumerate(parts):
            parent = "/".join(parts[:depth])
            builder = self._items.by_drive_item_id(f"{self._base_ref}:/{parent}:" if parent else self._base_ref)
            folder = DriveItem(name=name, folder=Folder(),
                               additional_data={"@microsoft.graph.conflictBehavior": "fail"})
            response = await builder.children.post(folder, request_configuration=native())
            if response.status_code != 409:
                response.raise_for_status()

    async def _put_small(self, item, blob: bytes, behaviour: str) -> None:
        content = item.content
        info = content.to_put_request_information(blob)
        info.path_parameters["baseurl"] = self._endpoint  # the adapter fills it in only when it sends
        url = info.url
        await ok(content.with_url(f"{url}?@microsoft.graph.conflictBehavior={behaviour}").put(
            blob, request_configuration=native()))

    async def _put_session(self, item, blob: bytes, behaviour: str) -> None:
        body = CreateUploadSessionPostRequestBody(item=DriveItemUploadableProperties(
            additional_data={"@microsoft.graph.conflictBehavior": behaviour}))
        session = await json_of(item.create_upload_session.post(body, request_configuration=native()))
        start = next_offset(session["nextExpectedRanges"], len(blob)) if session.get("nextExpectedRanges") else 0
        await send_fragments(self._http[1], session["uploadUrl"], blob, self._fragment, start)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key, *, offset=0, length=None) -> bytes:
        validate_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must be non-negative")
        if length == 0:  # HTTP cannot ask for zero bytes
            check_range(self.head(key).size, offset, 0)
            return b""
        ranged = offset > 0 or length is not None
        try:
            body, content_range = self._run(self._get(self._item(key), offset, length, ranged), key)
        except InvalidRange:
            check_range(self.head(key).size, offset, length)  # raises unless the range starts at the end
            return b""
        if ranged and not content_range:  # a server that ignored Range sent the whole object
            body = body[offset:None if length is None else offset + length]
        if length is not None and len(body) != length:  # the range ran past the end and was shortened
            raise InvalidRange(f"range {offset}+{length} past end of {key}")
        return body

    async def _get(self, item, offset: int, length: int | None, ranged: bool) -> tuple[bytes, bool]:
        span = http_range(offset, length) if ranged else None
        headers = {"Range": span} if span else {}
        response = await ok(item.content.get(request_configuration=native(headers)))
        return response.content, "content-range" in response.headers

    def head(self, key) -> ObjectInfo:
        validate_key(key)
        found = self._run(json_of(self._item(key).get(request_configuration=native())), key)
        if "folder" in found:
            raise NotFound(key)
        return _info(key, found)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Walk the folders under the prefix's directory; a missing folder lists as empty."""
        validate_prefix(prefix)
        directory, _, stem = prefix.rpartition("/")
        pending: list[tuple[Any, str, str]] = [(self._item(directory), f"{directory}/" if directory else "", stem)]
        while pending:
            folder, relative, stem = pending.pop()
            try:
                for child in self._children(folder, relative):
                    name = child.get("name", "")
                    if not name.startswith(stem):
                        continue
                    if "folder" in child:
                        pending.append((self._items.by_drive_item_id(child["id"]), f"{relative}{name}/", ""))
                        continue
                    key = relative + name
                    try:
                        validate_key(key)
                    except BackendError:
                        continue  # not ours (a user's file, an upper-case name)
                    yield _info(key, child)
            except NotFound:
                continue  # the folder does not exist (yet), or was removed while we walked

    def _children(self, folder, relative: str) -> Iterator[dict]:
        """A folder's children, page by page (`@odata.nextLink` carries the paging state)."""
        query = ChildrenRequestBuilder.ChildrenRequestBuilderGetQueryParameters(top=self._page_size, select=_SELECT)
        page = self._run(json_of(folder.children.get(request_configuration=native(query=query))), relative or "/")
        while True:
            yield from page.get("value") or ()
            link = page.get("@odata.nextLink")
            if not link:
                return
            page = self._run(json_of(folder.children.with_url(link).get(request_configuration=native())),
                             relative or "/")

    # -- deletes --------------------------------------------------------------------------------

    def delete(self, key) -> None:
        validate_key(key)
        try:
            self._run(ok(self._item(key).delete(request_configuration=native())), key)
        except NotFound:
            pass

    def close(self) -> None:
        async def finish() -> None:
            for http in self._http:
                await http.aclose()

        self._loop.close(finish())
