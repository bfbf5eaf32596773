"""The in-memory drive behind the OneDrive fake (tests/servers/onedrive_fake.py).

It models what the backend relies on: items with ids in a folder tree, case-insensitive names
(as OneDrive), path resolution from an id or `root`, uploads that create missing parent folders
and honour `@microsoft.graph.conflictBehavior`, recursive delete, the app folder created on
first use, and DriveItem JSON in Graph's shape. Callers hold the fake's lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field


class GraphError(Exception):
    """Becomes `{"error": {"code": ..., "message": ...}}` with `status`."""

    def __init__(self, status: int, code: str, message: str = "", headers: dict | None = None):
        super().__init__(message or code)
        self.status, self.code, self.headers = status, code, headers or {}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def not_found() -> GraphError:
    return GraphError(404, "itemNotFound", "The resource could not be found.")


@dataclass
class Item:
    id: str
    name: str
    parent: str | None
    folder: bool
    data: bytes = b""
    version: int = 1
    mtime: str = ""
    children: dict[str, str] = field(default_factory=dict)  # lower-case name -> id


class Drive:
    id = "b!fakeDrive1"  # real ids of business drives contain "!", which Kiota percent-encodes
    app_name = "agent-test"

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.root = self._add(Item("ROOT0001", "root", None, True))
        self.approot: Item | None = None

    def _add(self, item: Item) -> Item:
        item.mtime = now_iso()
        self.items[item.id] = item
        if item.parent is not None:
            self.items[item.parent].children[item.name.lower()] = item.id
        return item

    def app_folder(self) -> Item:
        if self.approot is None:  # OneDrive creates Apps/<app name> when the app first asks for it
            self.approot = self._folder(self._folder(self.root, "Apps"), self.app_name)
        return self.approot

    def _folder(self, parent: Item, name: str) -> Item:
        existing = parent.children.get(name.lower())
        if existing is None:
            return self._add(Item(secrets.token_hex(8).upper(), name, parent.id, True))
        if not self.items[existing].folder:
            raise GraphError(409, "nameAlreadyExists", f"a file named {name!r} is in the way")
        return self.items[existing]

    def resolve(self, ref: str, path: str | None) -> Item | None:
        """`ref` is an item id or `root`; `path` the part between `:/` and `:`, if any."""
        item = self.root if ref == "root" else self.items.get(ref)
        for name in [p for p in (path or "").split("/") if p]:
            if item is None or not item.folder:
                return None
            item = self.items.get(item.children.get(name.lower(), ""))
        return item

    def store(self, ref: str, path: str | None, data: bytes, conflict: str) -> tuple[Item, bool]:
        """Create or replace the file at ref[:path:]; returns (item, created)."""
        existing = self.resolve(ref, path)
        if existing is not None:
            if existing.folder or conflict == "fail":
                raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
            existing.data, existing.version, existing.mtime = data, existing.version + 1, now_iso()
            return existing, False
        parent = self.resolve(ref, None)
        parts = [p for p in (path or "").split("/") if p]
        if parent is None or not parts:
            raise not_found()
        for name in parts[:-1]:
            parent = self._folder(parent, name)
        return self._add(Item(secrets.token_hex(8).upper(), parts[-1], parent.id, False, data)), True

    def delete(self, item: Item) -> None:
        for child in list(item.children.values()):
            self.delete(self.items[child])
        self.items.pop(item.id, None)
        if item.parent in self.items:
            self.items[item.parent].children.pop(item.name.lower(), None)
        if item is self.approot:
            self.approot = None

    def children(self, folder: Item) -> list[Item]:
        return [self.items[folder.children[name]] for name in sorted(folder.children)]

    def to_json(self, item: Item) -> dict:
        body = {"id": item.id, "name": item.name, "eTag": f'"{{{item.id}}},{item.version}"',
                "cTag": f'"c:{{{item.id}}},{item.version}"', "createdDateTime": item.mtime,
                "lastModifiedDateTime": item.mtime, "size": 0 if item.folder else len(item.data),
                "parentReference": {"driveId": self.id, "driveType": "personal", "id": item.parent}}
        if item.folder:
            body["folder"] = {"childCount": len(item.children)}
        else:
            body["file"] = {"mimeType": "application/octet-stream",
                            "hashes": {"sha256Hash": hashlib.sha256(item.data).hexdigest().upper()}}
        if item is self.approot:
            body["specialFolder"] = {"name": "approot"}
        return body
