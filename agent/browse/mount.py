"""`agent mount`: snapshots as a read-only FUSE tree (mfusepy, over libfuse 3).

    /HOST/SOURCE/TIME/disk.img             the whole image
    /HOST/SOURCE/TIME/partN.img            one partition
    /HOST/SOURCE/TIME/files/partN/...      the files of each partition that can be browsed
    /HOST/SOURCE/latest/...                the newest snapshot of that source (the same as its TIME)

With one snapshot given, its TIME directory is the root. Everything is read on demand through
agent.browse.image (only the chunks asked for are fetched); images and filesystems are opened on
first use. libfuse runs the loop single-threaded: The Sleuth Kit's handles are not thread-safe.
"""

from __future__ import annotations

import errno
import stat
from dataclasses import dataclass, field
from typing import Any

from agent.browse.fs import Entry, Filesystem, open_filesystem
from agent.browse.image import SnapshotImage, Window
from agent.errors import AgentError, FilesystemError
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot


def _name(text: str) -> str:
    """A source path or host as one path element: /dev/sda -> dev_sda."""
    return text.strip("/").replace("/", "_") or "_"


def _time(snap: Snapshot) -> str:
    return snap.time.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Snap:
    snap: Snapshot
    image: SnapshotImage | None = None
    filesystems: dict[str, Filesystem | None] = field(default_factory=dict)


class SnapshotTree:
    """Resolves paths of the mounted tree; the FUSE operations below are thin wrappers."""

    def __init__(self, repo: Repository, index: ChunkIndex, snaps: list[Snapshot], single: bool) -> None:
        self._repo, self._index = repo, index
        self._single = single
        self._snaps: dict[tuple[str, ...], _Snap] = {}
        self._latest: dict[tuple[str, str], str] = {}
        for s in snaps:
            if single:
                self._snaps[("",)] = _Snap(s)
                continue
            host, source, when = _name(s.host), _name(s.source_path), _time(s)
            self._snaps[(host, source, when)] = _Snap(s)
            self._latest[(host, source)] = max(self._latest.get((host, source), ""), when)
        self.mtime = max((s.time.timestamp() for s in snaps), default=0.0)

    # ---- lookups --------------------------------------------------------------------------------
    def _split(self, path: str) -> tuple[tuple[str, ...], list[str]]:
        """(snapshot key or a prefix of one, the rest of the path inside that snapshot)."""
        parts = [p for p in path.split("/") if p]
        if self._single:
            return ("",), parts
        if len(parts) >= 3 and parts[2] == "latest" and tuple(parts[:2]) in self._latest:
            parts[2] = self._latest[(parts[0], parts[1])]
        return tuple(parts[:3]), parts[3:]

    def _image(self, s: _Snap) -> SnapshotImage:
        if s.image is None:
            s.image = SnapshotImage(self._repo, self._index, s.snap)
        return s.image

    def _partitions(self, s: _Snap) -> dict[str, tuple[int, int]]:
        return {f"part{p['number']}": (int(p["start"]), int(p["size"])) for p in s.snap.partitions
                if s.snap.holds(p)}  # a partition left out (`backup --partitions`) is not shown

    def _fs(self, s: _Snap, part: str) -> Filesystem | None:
        if part not in s.filesystems:
            if part == "root":  # a snapshot of one filesystem: the whole image
                start, size = 0, s.snap.size
            else:
                start, size = self._partitions(s)[part]
            try:
                s.filesystems[part] = open_filesystem(Window(self._image(s), start, size),
                                                 f"snapshot {s.snap.id[:8]} {part}")
            except FilesystemError:
                s.filesystems[part] = None
        return s.filesystems[part]

    def _fs_names(self, s: _Snap) -> list[str]:
        parts = list(self._partitions(s)) or ["root"]
        return [p for p in parts if self._fs(s, p) is not None]

    # ---- what FUSE asks -------------------------------------------------------------------------
    def getattr(self, path: str) -> dict[str, Any]:
        key, rest = self._split(path)
        d = self._dir(self.mtime)
        if not self._single and len(key) < 3:
            if not self._prefix_exists(key):
                raise _enoent()
            return d
        s = self._snaps.get(key)
        if s is None:
            raise _enoent()
        when = s.snap.time.timestamp()
        if not rest:
            return self._dir(when)
        if len(rest) == 1 and rest[0] == "disk.img":
            return self._file(s.snap.size, when)
        if len(rest) == 1 and rest[0] in {f"{p}.img" for p in self._partitions(s)}:
            return self._file(self._partitions(s)[rest[0][:-4]][1], when)
        if rest[0] == "files":
            if len(rest) == 1:
                return self._dir(when)
            fs = self._fs(s, rest[1]) if rest[1] in (list(self._partitions(s)) or ["root"]) else None
            if fs is None:
                raise _enoent()
            if len(rest) == 2:  # the filesystem's root: the snapshot's time is its best date
                return self._dir(when)
            return self._stat_of(self._entry(fs, rest[2:]))
        raise _enoent()

    def readdir(self, path: str) -> list[str]:
        key, rest = self._split(path)
        if not self._single and len(key) < 3:
            names = sorted({k[len(key)] for k in self._snaps if k[:len(key)] == key})
            if len(key) == 2 and key in self._latest:
                names.append("latest")
            if not names and not self._prefix_exists(key):
                raise _enoent()
            return [".", "..", *names]
        s = self._snaps.get(key)
        if s is None:
            raise _enoent()
        if not rest:
            return [".", "..", "disk.img", *(f"{p}.img" for p in self._partitions(s)), "files"]
        if rest == ["files"]:
            return [".", "..", *self._fs_names(s)]
        fs = self._fs(s, rest[1]) if rest[0] == "files" and len(rest) > 1 else None
        if fs is None:
            raise _enoent()
        return [".", "..", *(e.name for e in fs.listdir("/" + "/".join(rest[2:])))]

    def readlink(self, path: str) -> str:
        key, rest = self._split(path)
        s = self._snaps.get(key)
        if s is None or len(rest) < 3 or rest[0] != "files":
            raise _enoent()
        fs = self._fs(s, rest[1])
        entry = self._entry(fs, rest[2:]) if fs else None
        if entry is None or entry.target is None:
            raise OSError(errno.EINVAL, "not a symlink")
        return entry.target

    def read(self, path: str, size: int, offset: int) -> bytes:
        key, rest = self._split(path)
        s = self._snaps.get(key)
        if s is None or not rest:
            raise _enoent()
        try:
            if rest == ["disk.img"]:
                return self._image(s).read(offset, size)
            if len(rest) == 1 and rest[0].endswith(".img") and rest[0][:-4] in self._partitions(s):
                start, length = self._partitions(s)[rest[0][:-4]]
                return Window(self._image(s), start, length).read(offset, size)
            if rest[0] == "files" and len(rest) > 2:
                fs = self._fs(s, rest[1])
                entry = self._entry(fs, rest[2:]) if fs else None
                if entry is not None and entry.kind == "file":
                    return fs.read_at(entry, offset, size) if fs else b""
        except AgentError:
            raise OSError(errno.EIO, "damaged data") from None  # the file, not the mount, fails
        raise _enoent()

    def close(self) -> None:
        for s in self._snaps.values():
            if s.image is not None:
                s.image.close()

    # ---- helpers --------------------------------------------------------------------------------
    def _prefix_exists(self, key: tuple[str, ...]) -> bool:
        return any(k[:len(key)] == key for k in self._snaps)

    def _entry(self, fs: Filesystem | None, parts: list[str]) -> Entry | None:
        if fs is None:
            raise _enoent()
        try:
            return fs.stat("/" + "/".join(parts))
        except AgentError:
            raise _enoent() from None

    def _dir(self, when: float) -> dict[str, Any]:
        return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_size": 0, "st_mtime": when, "st_atime": when,
                "st_ctime": when}

    def _file(self, size: int, when: float) -> dict[str, Any]:
        return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": size, "st_mtime": when, "st_atime": when,
                "st_ctime": when}

    def _stat_of(self, e: Entry | None) -> dict[str, Any]:
        if e is None:
            raise _enoent()
        kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "file": stat.S_IFREG}.get(e.kind, stat.S_IFREG)
        mode = e.mode & 0o5555  # read-only: no write bits
        return {"st_mode": kind | mode, "st_nlink": 2 if e.kind == "dir" else 1, "st_size": e.size,
                "st_uid": e.uid, "st_gid": e.gid, "st_mtime": e.mtime, "st_atime": e.mtime, "st_ctime": e.mtime}


def _enoent() -> OSError:
    return OSError(errno.ENOENT, "no such file or directory")


def serve(tree: SnapshotTree, mountpoint: str) -> None:
    """Run the FUSE loop in the foreground until unmounted (SIGINT/SIGTERM unmount cleanly)."""
    import mfusepy

    class Ops(mfusepy.Operations):
        def getattr(self, path, fh=None):
            return _call(tree.getattr, path)

        def readdir(self, path, fh):
            return _call(tree.readdir, path)

        def readlink(self, path):
            return _call(tree.readlink, path)

        def open(self, path, flags):
            if flags & 3:  # O_WRONLY or O_RDWR
                raise mfusepy.FuseOSError(errno.EROFS)
            _call(tree.getattr, path)
            return 0

        def read(self, path, size, offset, fh):
            return _call(tree.read, path, size, offset)

    def _call(fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            raise mfusepy.FuseOSError(exc.errno or errno.EIO) from None

    try:
        mfusepy.FUSE(Ops(), mountpoint, foreground=True, nothreads=True, ro=True, fsname="agent", subtype="agent")
    finally:
        tree.close()
