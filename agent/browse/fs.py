"""The filesystem inside a partition, read in place: the interface every reader offers, and the
reader for most filesystems, The Sleuth Kit (pytsk3).

TSK reads ext2/3/4, FAT12/16/32, exFAT, NTFS, HFS+, APFS and ISO 9660 through any object with
read(offset, length), so a partition of a snapshot is browsed without a temporary copy: only
the chunks holding the metadata and files asked for are fetched (agent.browse.image). pytsk3 is
imported only here, so `agent --help` stays fast. XFS, which TSK lacks, has its own reader
(agent.browse.xfs); open_filesystem picks one. docs/restore-files.md lists what each reads.
"""

from __future__ import annotations

import struct
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
    window: Window | None = None  # the partition it reads: runs() are offsets in it

    @property
    def where(self) -> str:
        """The partition, as error messages name it ("snapshot 3f9a2c1e partition 2")."""
        return self._where

    def used(self) -> int | None:
        """Bytes in use, by the filesystem's own count (agent.browse.usage); None when unknown."""
        return None

    def runs(self, entry: Entry) -> list[tuple[int, int, int]] | None:
        """Where a regular file's written data lies: (offset in the file, offset in the partition,
        length), in file order, holes and unwritten extents left out; None when the data is not
        stored plainly (inline, compressed, encrypted) or the reader cannot tell. Extraction then
        reads the image directly, at restore speed, instead of through the reader."""
        return None

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
        self.window = window

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

    def _entry(self, path: str, name: str, f) -> Entry:
        t, meta = self._tsk, f.info.meta
        kind = {int(t.TSK_FS_META_TYPE_REG): "file", int(t.TSK_FS_META_TYPE_DIR): "dir",
                int(t.TSK_FS_META_TYPE_LNK): "symlink"}.get(int(meta.type), "other")
        target = meta.link.decode("utf-8", "surrogateescape") if kind == "symlink" and meta.link else None
        if kind == "file" and self.kind == "ntfs" and _INTX_MIN <= int(meta.size) <= _INTX_MAX \
                and not int(meta.size) % 2:
            target = _interix_target(f, int(meta.size))
            kind = "symlink" if target is not None else kind
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
        return self._entry(path, path.rstrip("/").rsplit("/", 1)[-1], f)

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
            out.append(self._entry(f"{base}/{name}", name, e))
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

    def used(self) -> int | None:
        from agent.browse import usage

        assert self.window is not None
        read = self.window.read
        if self.kind in ("ext2", "ext3", "ext4"):
            return usage.ext_used(read)
        if self.kind == "fat":
            return usage.fat_used(read)
        boot = read(0, 512)
        if self.kind == "ntfs":
            units, unit = int(self._fs.info.block_count), int(self._fs.info.block_size)
            return self._bitmap_used("/$Bitmap", units, unit, 0)
        if self.kind == "exfat" and len(boot) == 512:  # clusters after the cluster heap's start
            heap, count = struct.unpack_from("<II", boot, 88)
            sector_bits, cluster_bits = boot[108], boot[109]
            if 9 <= sector_bits <= 12 and sector_bits + cluster_bits <= 25:
                return self._bitmap_used("/$ALLOC_BITMAP", count, 1 << (sector_bits + cluster_bits),
                                         heap << sector_bits)
        return None

    def _bitmap_used(self, path: str, units: int, unit: int, before: int) -> int | None:
        from agent.browse import usage

        try:
            f = self._fs.open(path)
            bitmap = f.read_random(0, int(f.info.meta.size))
        except (OSError, RuntimeError):
            return None
        used = usage.bitmap_used(bitmap, units, unit)
        return None if used is None else before + used

    def runs(self, entry: Entry) -> list[tuple[int, int, int]] | None:
        """From TSK's block runs, for ext2/3/4 and FAT only: NTFS and exFAT have a valid-data length
        (bytes past it read as zeros) that pytsk3 does not expose, and NTFS compresses and encrypts."""
        t = self._tsk
        if self.kind not in ("ext2", "ext3", "ext4", "fat") or entry.kind != "file":
            return None
        try:
            attrs = [a for a in self._fs.open_meta(inode=entry.inode)
                     if int(a.info.type) == int(t.TSK_FS_ATTR_TYPE_DEFAULT)]
            if len(attrs) != 1 or int(attrs[0].info.flags) & (int(t.TSK_FS_ATTR_COMP) | int(t.TSK_FS_ATTR_ENC)) \
                    or not int(attrs[0].info.flags) & int(t.TSK_FS_ATTR_NONRES):
                return None
            raw = [(int(r.offset), int(r.addr), int(r.len), int(r.flags)) for r in attrs[0]]
        except (OSError, RuntimeError):
            return None  # the reader's own path names the damage
        bs = int(self._fs.info.block_size)
        holes = int(t.TSK_FS_ATTR_RUN_FLAG_SPARSE) | int(t.TSK_FS_ATTR_RUN_FLAG_FILLER)
        out: list[tuple[int, int, int]] = []
        end = 0
        for off, addr, n, flags in raw:
            if off < end or flags & ~holes:
                return None  # out of order, or a kind of run this does not know: let TSK read it
            end = off + n
            lo, hi = off * bs, min(end * bs, entry.size)
            if flags & holes or lo >= hi:
                continue
            if self.window is None or (addr + n) * bs > self.window.size:
                return None
            out.append((lo, addr * bs, hi - lo))
        return out if end * bs >= entry.size else None

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


_INTX = b"IntxLNK\x01"  # ntfs-3g's symlinks (Interix style): this, then the target in UTF-16LE
_INTX_MIN, _INTX_MAX = len(_INTX) + 2, len(_INTX) + 2 * 1024


def _interix_target(f, size: int) -> str | None:
    """The target when an NTFS file is one of ntfs-3g's symlinks. Only files of a symlink's size
    (a target of up to 1024 characters) are read, so a listing costs little more."""
    try:
        data = f.read_random(0, size)
    except (OSError, RuntimeError):
        return None
    if not data.startswith(_INTX):
        return None
    try:
        return data[len(_INTX):].decode("utf-16-le")
    except UnicodeDecodeError:
        return None


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
