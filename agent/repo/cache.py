"""Local cache of immutable repository objects (index segments, snapshots, chunk-list packs).

Objects are stored as they are on the backend (sealed) under their content-hash name, so a cache
entry is verified by hashing and a damaged cache heals by re-downloading. Always rebuildable.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.config import env
from crypto.ids import object_id


class ObjectCache:
    def __init__(self, root: Path | None) -> None:
        self.root = root
        #: False for commands that verify the storage (check, repair): a cached copy would hide
        #: damage to the stored one; what they read still refreshes the cache
        self.serves = True

    @classmethod
    def for_repo(cls, repo_id: str, base: str | None = None) -> ObjectCache:
        if base is None:
            base = os.environ.get(env.CACHE_DIR)
        if base is None:
            import platformdirs

            base = platformdirs.user_cache_dir("agent")
        if base.lower() in ("off", "none", ""):
            return cls(None)
        root = Path(base) / repo_id
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            return cls(None)  # a read-only home must not stop a backup
        return cls(root)

    def _path(self, kind: str, name: str) -> Path | None:
        return None if self.root is None else self.root / kind / name

    def get(self, kind: str, name: str) -> bytes | None:
        path = self._path(kind, name)
        if path is None or not self.serves:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if object_id(data) != name:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, kind: str, name: str, data: bytes) -> None:
        path = self._path(kind, name)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{name}.tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass

    def prune(self, kind: str, keep: set[str]) -> None:
        """Forget entries no longer in the repository."""
        if self.root is None or not (self.root / kind).is_dir():
            return
        for p in (self.root / kind).iterdir():
            if p.name not in keep:
                p.unlink(missing_ok=True)
