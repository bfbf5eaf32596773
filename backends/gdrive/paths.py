"""Folder paths -> Drive file ids, and the rule that settles duplicate names.

Drive addresses files by id and lets one folder hold several items with the same name, so a
key like `data/ab/<pack>` means a walk down folders by name. Ids never change, so they are
cached (folders and files apart: Drive allows a file and a folder of the same name). A cached
id can go stale when another machine deletes the item; callers that get a 404 for a cached id
call `forget` and look again.

Duplicates (two writers creating one name at once) are settled by one deterministic rule that
every reader and writer applies: the oldest item (lowest createdTime, then lowest id) is the
real one. Lookups pick it; a creator lists the name again after `settle_delay` and, if its own
item is not the oldest, deletes its item. The delay covers createdTime's millisecond
resolution and Drive's listing lag: a rival created in the same millisecond must be visible
by then.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Iterator, Literal, overload

from googleapiclient.errors import HttpError

from backends.gdrive.client import FOLDER_MIME, LIST_FIELDS, DriveClient, quote

Path = tuple[str, ...]


def oldest(entries: list[dict]) -> dict | None:
    """The item every client agrees is the real one among same-named duplicates."""
    return min(entries, key=lambda e: (datetime.fromisoformat(e["createdTime"]), e["id"]), default=None)


def is_missing(exc: BaseException) -> bool:
    return isinstance(exc, HttpError) and exc.resp.status == 404


class PathCache:
    """Thread-safe id cache: folder path -> id, and (folder path + name) -> file id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[Path, str] = {}
        self._files: dict[Path, str] = {}

    def folder(self, path: Path) -> str | None:
        with self._lock:
            return self._folders.get(path)

    def file(self, path: Path) -> str | None:
        with self._lock:
            return self._files.get(path)

    def remember(self, path: Path, file_id: str, *, is_folder: bool) -> None:
        with self._lock:
            (self._folders if is_folder else self._files)[path] = file_id

    def forget(self, path: Path, *, folders: bool = True) -> None:
        """Drop the file at `path` and, with `folders`, every folder along it (any may be the stale one)."""
        with self._lock:
            self._files.pop(path, None)
            for depth in range(1, len(path) + 1 if folders else 1):
                self._folders.pop(path[:depth], None)


class Tree:
    """Folder walking, creation on demand and duplicate settling under one root folder id."""

    def __init__(self, client: DriveClient, root_id: str, base: Path, *, page_size: int = 1000,
                 settle_delay: float = 0.2) -> None:
        self._client = client
        self._root_id = root_id
        self.base = base
        self._page_size = page_size
        self._settle_delay = settle_delay
        self._mkdir_lock = threading.Lock()  # one process creates each folder once
        self.cache = PathCache()

    def children(self, parent: str, name: str | None = None, *, folders: bool | None = None) -> list[dict]:
        """Every (untrashed) child of `parent`, optionally by exact name and kind; all pages."""
        q = [f"{quote(parent)} in parents", "trashed = false"]
        if name is not None:
            q.append(f"name = {quote(name)}")
        if folders is not None:
            q.append(f"mimeType {'=' if folders else '!='} {quote(FOLDER_MIME)}")
        found, token = [], None
        while True:
            reply = self._client.files().list(
                q=" and ".join(q), pageSize=self._page_size, pageToken=token, fields=LIST_FIELDS,
                supportsAllDrives=True, includeItemsFromAllDrives=True).execute()
            found += reply.get("files", [])
            token = reply.get("nextPageToken")
            if not token:
                return found

    @overload
    def folder(self, path: Path, *, create: Literal[True]) -> str: ...
    @overload
    def folder(self, path: Path, *, create: bool) -> str | None: ...

    def folder(self, path: Path, *, create: bool) -> str | None:
        """Id of the folder at `path` below the repository folder; None if absent and not `create`."""
        full = self.base + path
        depth, parent = 0, self._root_id
        for d in range(len(full), 0, -1):
            cached = self.cache.folder(full[:d])
            if cached:
                depth, parent = d, cached
                break
        for d in range(depth, len(full)):
            found = oldest(self.children(parent, full[d], folders=True))
            if found is None:
                if not create:
                    return None
                found = self._make_folder(parent, full[d])
            parent = found["id"]
            self.cache.remember(full[:d + 1], parent, is_folder=True)
        return parent

    def _make_folder(self, parent: str, name: str) -> dict:
        with self._mkdir_lock:
            found = oldest(self.children(parent, name, folders=True))  # another thread may have made it
            if found is not None:
                return found
            mine = self._client.files().create(
                body={"name": name, "mimeType": FOLDER_MIME, "parents": [parent]},
                fields="id,name,createdTime", supportsAllDrives=True).execute()
            return self.settle(parent, name, mine["id"], folders=True) or mine

    def settle(self, parent: str, name: str, mine: str, *, folders: bool) -> dict | None:
        """After creating `mine`: the winning item (None if every copy was deleted meanwhile).

        A losing creator deletes its own item. A winning file creator also deletes the losers
        (covering a loser that crashed); folders are never deleted by a winner, and a losing
        folder only when empty, because deleting a folder deletes what is inside.
        """
        time.sleep(self._settle_delay)
        entries = self.children(parent, name, folders=folders)
        winner = oldest(entries)
        if winner is None:
            return None
        if winner["id"] == mine:
            doomed = [] if folders else [e["id"] for e in entries if e["id"] != mine]
        elif folders:
            doomed = [mine] if not self.children(mine) else []
        else:
            doomed = [mine]
        for file_id in doomed:
            self.delete(file_id)
        return winner

    def delete(self, file_id: str) -> None:
        """Delete for good (not to the trash); already gone is fine."""
        try:
            self._client.files().delete(fileId=file_id, supportsAllDrives=True).execute()
        except HttpError as exc:
            if not is_missing(exc):
                raise

    def lookup(self, path: Path, name: str, *, use_cache: bool = True) -> tuple[str | None, dict | None]:
        """(file id, fresh metadata or None when the id came from the cache) of `path/name`."""
        if use_cache:
            cached = self.cache.file(self.base + path + (name,))
            if cached:
                return cached, None
        parent = self.folder(path, create=False)
        entry = oldest(self.children(parent, name, folders=False)) if parent else None
        if entry is None:
            return None, None
        self.cache.remember(self.base + path + (name,), entry["id"], is_folder=False)
        return entry["id"], entry

    def walk(self, folder_id: str, path: Path, name_prefix: str = "") -> Iterator[tuple[Path, dict]]:
        """(path, metadata) of every file below `folder_id` whose first name starts with `name_prefix`.

        Duplicate files yield the oldest only; duplicate folders are all walked, so nothing
        stored in a folder that lost a creation race is hidden from listing (and thus from check).
        """
        entries = [e for e in self.children(folder_id) if e["name"].startswith(name_prefix)]
        files: dict[str, list[dict]] = {}
        for entry in entries:
            if entry["mimeType"] != FOLDER_MIME:
                files.setdefault(entry["name"], []).append(entry)
        for name in sorted(files):
            first = oldest(files[name])
            assert first is not None  # every list in `files` holds at least one entry
            self.cache.remember(self.base + path + (name,), first["id"], is_folder=False)
            yield path + (name,), first
        for entry in sorted((e for e in entries if e["mimeType"] == FOLDER_MIME), key=lambda e: e["name"]):
            yield from self.walk(entry["id"], path + (entry["name"],))
