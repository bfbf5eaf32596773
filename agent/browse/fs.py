"""The filesystem inside a partition, read in place: the interface every reader offers, and the
reader for most filesystems, The Sleuth Kit (pytsk3).

TSK reads ext2/3/4, FAT12/16/32, exFAT, NTFS, HFS+, APFS and ISO 9660 through any object with
read(offset, length), so a partition of a snapshot is browsed without a temporary copy: only
the chunks holding the metadata and files asked for are fetched (agent.browse.image). pytsk3 is
imported only here, so `agent --help` stays fast. XFS, which TSK lacks, has its own reader
(agent.browse.xfs); open_filesystem picks one. docs/restore-files.md lists what each reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from agent.errors import CorruptObject, FilesystemError, UsageError

if TYPE_CHECKING:
    from agent.browse.image import Window

_HIDDEN = {"$OrphanFiles", "$MBR", "$FAT1", "$FAT2"}  # TSK's virtual entries, not the user's files


@dataclass(frozen=True)
class Entry:
    path: str
    name: str
    kind: str  # "file", "dir", "symlink", "other"
    size: int
    mode: int  # permission bits
    uid: int
    gid: int
    mtime: float
    target: str | None  # symlinks
    inode: int


class Filesystem:
    """The interface every reader offers (agent.browse.extract, agent.browse.mount and the CLI use
    only this): kind, stat, listdir, walk, read_file, read_at."""

    kind = "unknown"
    _where = ""

    def stat(self, path: str) -> Entry:
        raise NotImplementedError

    def listdir(self, path: str) -> list[Entry]:
        """The entries of a directory, sorted by name, without . and .."""
        raise NotImplementedError

    def read_at(self, entry: Entry, offset: int, size: int) -> bytes:
        """Bytes of a regular file, for a mounted view's reads (clipped to the file's end)."""
        raise NotImplementedError

    def read_file(self, entry: Entry, chunk: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
        """(offset, data) blocks of a regular file, in order; all-zero blocks are for the caller to skip,
        and a reader may leave holes out altogether (the caller's file keeps entry.size)."""
        raise NotImplementedError

    def walk(self, path: str) -> Iterator[Entry]:
        """Every entry under `path` (a directory), parents before children. A directory that holds
        one of its own ancestors (damaged metadata) is CorruptObject, not an endless walk."""
        yield from self._walk(path, frozenset())

    def _walk(self, path: str, ancestors: frozenset[int]) -> Iterator[Entry]:
        for entry in self.listdir(path):
            yield entry
            if entry.kind == "dir":
                if entry.inode in ancestors:
                    raise CorruptObject(f"{self._where}: directory {entry.path} contains itself (damaged?)")
                yield from self._walk(entry.path, ancestors | {entry.inode})


class TskFilesystem(Filesystem):
    """ext2/3/4, FAT, exFAT, NTFS, HFS+, APFS and ISO 9660, through The Sleuth Kit."""

    def __init__(self, window: Window, where: str) -> None:
        import pytsk3

        self._tsk = pytsk3
        self._where = where

        class _Img(pytsk3.Img_Info):
            def __init__(self, w: Window) -> None:
                self._w = w
                super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

            def read(self, offset: int, size: int) -> bytes:
                return self._w.read(offset, size)

            def get_size(self) -> int:
                return self._w.size

        try:
            self._fs = pytsk3.FS_Info(_Img(window))
        except (OSError, RuntimeError):
            raise FilesystemError(f"{where}: no filesystem that can be browsed (unknown, damaged, or encrypted such "
                                  "as LUKS or BitLocker)",
                                  hint="restore the partition with `agent restore --partition` and open it "
                                       "with its own tools") from None
        self.kind = _names().get(int(self._fs.info.ftype), "unknown")
        self._virtual = {int(pytsk3.TSK_FS_META_TYPE_VIRT), int(pytsk3.TSK_FS_META_TYPE_VIRT_DIR)}
        self.ntfs_like = self.kind in ("ntfs", "fat", "exfat")

    def _entry(self, path: str, name: str, meta) -> Entry:
        t = self._tsk
        kind = {int(t.TSK_FS_META_TYPE_REG): "file", int(t.TSK_FS_META_TYPE_DIR): "dir",
                int(t.TSK_FS_META_TYPE_LNK): "symlink"}.get(int(meta.type), "other")
        target = meta.link.decode("utf-8", "surrogateescape") if kind == "symlink" and meta.link else None
        return Entry(path, name, kind, int(meta.size), int(meta.mode) & 0o7777, int(meta.uid), int(meta.gid),
                     meta.mtime + meta.mtime_nano / 1e9, target, int(meta.addr))

    def stat(self, path: str) -> Entry:
        if path in ("", "/"):
            return Entry("/", "/", "dir", 0, 0o755, 0, 0, 0.0, None, 0)
        try:
            f = self._fs.open(path)
        except (OSError, RuntimeError):
            raise UsageError(f"{self._where}: {path} does not exist") from None
        if f.info.meta is None:
            raise UsageError(f"{self._where}: {path} does not exist")
        return self._entry(path, path.rstrip("/").rsplit("/", 1)[-1], f.info.meta)

    def listdir(self, path: str) -> list[Entry]:
        try:
            d = self._fs.open_dir(path=path or "/")
        except (OSError, RuntimeError):
            if self.stat(path).kind != "dir":
                raise UsageError(f"{self._where}: {path} is not a directory") from None
            raise CorruptObject(f"{self._where}: directory {path} cannot be read (damaged?)") from None
        out = []
        base = path.rstrip("/")
        for e in d:
            name = e.info.name.name.decode("utf-8", "surrogateescape")
            if name in (".", "..") or e.info.meta is None or (name in _HIDDEN and base in ("", "/")):
                continue
            if int(e.info.meta.type) in self._virtual:  # TSK's own ($MBR, $FAT1, ... of FAT)
                continue
            if self.kind in ("fat", "exfat") and name.endswith("(Volume Label Entry)"):
                continue  # the volume label, which TSK lists as a file
            if self.ntfs_like and base in ("", "/") and name.startswith("$"):
                continue  # NTFS metafiles ($MFT, $Bitmap, ...): the system's, hidden as Windows does
            out.append(self._entry(f"{base}/{name}", name, e.info.meta))
        return sorted(out, key=lambda x: x.name)

    def read_at(self, entry: Entry, offset: int, size: int) -> bytes:
        size = max(0, min(size, entry.size - offset))
        if not size:
            return b""
        try:
            return self._fs.open_meta(inode=entry.inode).read_random(offset, size)
        except (OSError, RuntimeError):
            raise CorruptObject(f"{self._where}: {entry.path}: bytes {offset}..{offset + size} cannot be "
                                "read") from None

    def read_file(self, entry: Entry, chunk: int = 4 << 20) -> Iterator[tuple[int, bytes]]:
        f = self._fs.open_meta(inode=entry.inode)
        off = 0
        while off < entry.size:
            n = min(chunk, entry.size - off)
            try:
                data = f.read_random(off, n)
            except (OSError, RuntimeError):  # pytsk3 raises either, e.g. when a chunk fails authentication
                raise CorruptObject(f"{self._where}: {entry.path}: bytes {off}..{off + n} cannot be read") from None
            if len(data) != n:
                raise CorruptObject(f"{self._where}: {entry.path}: bytes {off}..{off + n} cannot be read")
            yield off, data
            off += n


def _names() -> dict[int, str]:
    import pytsk3

    names = {}
    for attr, name in (("EXT2", "ext2"), ("EXT3", "ext3"), ("EXT4", "ext4"), ("FAT12", "fat"), ("FAT16", "fat"),
                       ("FAT32", "fat"), ("EXFAT", "exfat"), ("NTFS", "ntfs"), ("HFS", "hfs"), ("APFS", "apfs"),
                       ("ISO9660", "iso9660")):
        value = getattr(pytsk3, f"TSK_FS_TYPE_{attr}", None)
        if value is not None:
            names[int(value)] = name
    return names


def open_filesystem(window: Window, where: str) -> Filesystem:
    """The filesystem in `window`, by the reader that knows it; FilesystemError when none does."""
    if window.read(0, 4) == b"XFSB":
        from agent.browse.xfs import XfsFilesystem

        return XfsFilesystem(window, where)
    return TskFilesystem(window, where)
