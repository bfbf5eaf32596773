"""XFS, read in place by the agent's own code: The Sleuth Kit has no XFS, and the other Python readers
are AGPL or cannot be installed (docs/dependencies.md).

Read-only and deliberately small. It reads the superblock's geometry; finds an inode straight from
its number (AG, block in the AG, slot in the block: no inode btree walk); maps file blocks from the
data fork in extents or btree (bmbt) form; lists directories in shortform, block, leaf and node form
(leaf and node directories from their data blocks below XFS_DIR2_LEAF_OFFSET, so their hash indexes
are never read); reads symlinks inline or from blocks, and regular files whose holes and unwritten
extents read as zeros without fetching anything. v5 filesystems as current mkfs.xfs makes them (CRC,
finobt, sparse inodes, reflink, rmapbt, bigtime, nrext64, ftype) and v4 ones.

Checksums are not verified (the repository authenticates every chunk already); instead every magic
number, owner, count, offset and length is checked before it is used, so damaged metadata is a
CorruptObject naming the inode, never an untyped exception, an endless loop or a huge allocation.
Metadata is read a whole block at a time through a small cache, file data one extent piece per read.
"""

from __future__ import annotations

import stat
import struct
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, NamedTuple, NoReturn

from agent.browse.fs import Entry, Filesystem
from agent.errors import CorruptObject, FilesystemError, UsageError

if TYPE_CHECKING:
    from agent.browse.image import Window

# ---- on-disk formats (all big-endian) --------------------------------------------------------------
# xfs_dsb up to sb_features_incompat: the geometry, the root inode and the feature bits
_SB = struct.Struct(">4sIQ40xQ20xII8xHHHH12xBBBBB67xB7xI12xI")
# xfs_dinode core common to v1/v2/v3 inodes (100 bytes); di_big_nextents sits where v2 had padding
_INODE = struct.Struct(">2sHBB2xII8xQ8xQ8xq12xI2xB7xH8x")
_INODE3 = struct.Struct(">20xQ24xQ")  # v3 inodes, from byte 100: di_flags2, di_ino
_BMDR = struct.Struct(">HH")  # the bmbt root inside an inode: level, numrecs
_BTREE = struct.Struct(">4sHH")  # a bmbt block: magic, level, numrecs (v5: owner at byte 56)
_EXTENT = struct.Struct(">QQ")  # one 128-bit packed extent record
_SYMLINK = struct.Struct(">4sII")  # v5 remote symlink header: magic, offset, bytes (owner at byte 32)
_BE16, _BE32, _BE64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")

_LOCAL, _EXTENTS, _BTREE_FORMAT = 1, 2, 3  # di_format of a data fork
_DIFLAG_REALTIME = 0x1
_DIFLAG2_BIGTIME, _DIFLAG2_NREXT64 = 0x8, 0x10
_BIGTIME_EPOCH = 1 << 31  # bigtime counts nanoseconds from the oldest 32-bit time, 1901-12-13
# v5 incompat features this reader understands: ftype, sparse inodes, meta_uuid, bigtime, nrext64,
# exchange-range and parent pointers (the last two change nothing it reads)
_KNOWN_INCOMPAT = 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80
_V4_DIRV2, _V4_MOREBITS, _V4_FTYPE = 0x2000, 0x8000, 0x200
_LEAF_OFFSET = 32 << 30  # XFS_DIR2_LEAF_OFFSET: a directory's data blocks all lie below it
_SYMLINK_MAX = 1024  # XFS_SYMLINK_MAXLEN
_MAX_LEVELS = 10  # a bmbt is at most 9 levels deep, even for 2^64 extents
_FREE_TAG = b"\xff\xff"  # an unused stretch of a directory data block


class _Extent(NamedTuple):
    offset: int  # first file block
    block: int  # first filesystem block (AG number above agblklog bits, block in the AG below)
    length: int  # blocks
    unwritten: bool  # allocated, never written: reads as zeros


@dataclass
class _Inode:
    ino: int
    mode: int
    fmt: int
    uid: int
    gid: int
    size: int
    mtime: float
    nextents: int
    realtime: bool
    fork: bytes  # the data fork's bytes inside the inode
    extents: list[_Extent] | None = None  # the block map, read on first use


class _Lru(OrderedDict):
    """A bounded cache: metadata blocks, inodes and directories are revisited while walking a tree."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
        return super().get(key, default)

    def put(self, key, value):
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


def _records(buf: bytes, pos: int, count: int) -> list[_Extent]:
    """Unpack extent records: flag (1 bit), file offset (54), filesystem block (52), length (21)."""
    out = []
    for i in range(count):
        hi, lo = _EXTENT.unpack_from(buf, pos + 16 * i)
        out.append(_Extent((hi >> 9) & ((1 << 54) - 1), ((hi & 0x1FF) << 43) | (lo >> 21), lo & 0x1FFFFF,
                           bool(hi >> 63)))
    return out


class XfsFilesystem(Filesystem):
    """An XFS filesystem in `window`; FilesystemError when its superblock is not one this reads."""

    kind = "xfs"

    def __init__(self, window: Window, where: str) -> None:
        self._w, self._where = window, where
        self.window = window
        raw = window.read(0, _SB.size)
        if len(raw) < _SB.size:
            self._unreadable("the superblock is cut short")
        (magic, self._bs, dblocks, self._root, self._agblocks, self._agcount, versionnum, _sectsize, self._isize,
         inopblock, blocklog, _sectlog, inodelog, self._inopblog, self._agblklog, dirblklog, features2,
         incompat) = _SB.unpack(raw)
        self._v5 = versionnum & 0xF == 5
        checks = [
            (magic == b"XFSB" and versionnum & 0xF in (4, 5), "not an XFS v4 or v5 superblock"),
            (9 <= blocklog <= 16 and self._bs == 1 << blocklog, "bad block size"),
            (8 <= inodelog <= 11 and self._isize == 1 << inodelog and inodelog <= blocklog
             and inopblock == 1 << self._inopblog == self._bs >> inodelog, "bad inode size"),
            (self._agblocks > 0 and 0 < self._agcount and self._agblklog == (self._agblocks - 1).bit_length()
             and dblocks <= self._agcount * self._agblocks, "bad allocation group geometry"),
            (dblocks * self._bs <= window.size, "the partition is smaller than the filesystem"),
            (blocklog + dirblklog <= 16, "bad directory block size"),
            (self._v5 or versionnum & _V4_DIRV2, "version 1 directories"),
            (not self._v5 or not incompat & ~_KNOWN_INCOMPAT, f"unknown incompatible features {incompat:#x}"),
        ]
        for ok, why in checks:
            if not ok:
                self._unreadable(why)
        self._dblocks, self._dirblklog = dblocks, dirblklog
        self._ftype = int(bool(incompat & 0x1 if self._v5 else versionnum & _V4_MOREBITS and features2 & _V4_FTYPE))
        self._core = 176 if self._v5 else 100  # inode core; the data fork follows it
        self._bmbt_magic, self._bmbt_hdr = (b"BMA3", 72) if self._v5 else (b"BMAP", 24)
        self._dir_magic, self._dir_hdr = ((b"XDB3", b"XDD3"), 64) if self._v5 else ((b"XD2B", b"XD2D"), 16)
        self._blocks = _Lru(max(16, (4 << 20) >> blocklog))
        self._inodes = _Lru(1024)
        self._dirs = _Lru(16)

    def _unreadable(self, why: str) -> NoReturn:
        raise FilesystemError(f"{self._where}: an XFS filesystem this reader cannot read ({why})",
                              hint="restore the partition with `agent restore --partition` and check it with "
                                   "xfs_repair -n")

    def _corrupt(self, ino: int, what: str) -> NoReturn:
        raise CorruptObject(f"{self._where}: inode {ino}: {what} (damaged filesystem metadata)")

    # ---- the interface (agent.browse.fs.Filesystem) ------------------------------------------------
    def stat(self, path: str) -> Entry:
        parts = [p for p in path.split("/") if p]
        ino = self._root
        for name in parts:
            inode = self._inode(ino)
            if not stat.S_ISDIR(inode.mode):
                raise UsageError(f"{self._where}: {path} does not exist")
            child = self._names(inode).get(name)
            if child is None:
                raise UsageError(f"{self._where}: {path} does not exist")
            ino = child
        return self._entry("/" + "/".join(parts), parts[-1] if parts else "/", ino)

    def listdir(self, path: str) -> list[Entry]:
        top = self.stat(path)
        if top.kind != "dir":
            raise UsageError(f"{self._where}: {path} is not a directory")
        base = top.path.rstrip("/")
        names = self._names(self._inode(top.inode))
        return [self._entry(f"{base}/{name}", name, ino) for name, ino in sorted(names.items())]

    def read_at(self, entry: Entry, offset: int, size: int) -> bytes:
        size = max(0, min(size, entry.size - offset))
        if not size:
            return b""
        inode = self._file(entry)
        try:
            return self._read_range(inode, offset, size)
        except CorruptObject as exc:
            raise CorruptObject(f"{self._where}: {entry.path}: bytes {offset}..{offset + size} cannot be read "
                                f"({exc})") from None

    def read_file(self, entry: Entry, chunk: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
        """Only the written extents, in order: holes and unwritten extents are left out (extract leaves
        them as holes), so a huge sparse file, such as a VM's disk image, costs only its data."""
        inode, bs = self._file(entry), self._bs
        for e in self._extents(inode):
            if e.unwritten:
                continue
            end = min((e.offset + e.length) * bs, entry.size)
            for off in range(e.offset * bs, end, chunk):
                yield off, self.read_at(entry, off, min(chunk, end - off))

    def used(self) -> int | None:
        from agent.browse.usage import xfs_used

        return xfs_used(self._w.read)

    def runs(self, entry: Entry) -> list[tuple[int, int, int]] | None:
        """The written extents, from the block map."""
        inode, bs = self._file(entry), self._bs
        out = []
        for e in self._extents(inode):
            lo, hi = e.offset * bs, min((e.offset + e.length) * bs, entry.size)
            if not e.unwritten and lo < hi:
                out.append((lo, self._linear(inode.ino, e.block) * bs, hi - lo))
        return out

    def _file(self, entry: Entry) -> _Inode:
        inode = self._inode(entry.inode)
        if not stat.S_ISREG(inode.mode):
            raise UsageError(f"{self._where}: {entry.path} is not a regular file")
        if inode.realtime:
            raise FilesystemError(f"{self._where}: {entry.path} is on the realtime device, which this reader "
                                  "does not read", hint="restore the partition and its realtime device")
        return inode

    # ---- inodes --------------------------------------------------------------------------------------
    def _inode(self, ino: int) -> _Inode:
        """The inode numbered `ino`: its number is where it is (AG, block in the AG, slot in the block)."""
        cached = self._inodes.get(ino)
        if cached is not None:
            return cached
        agno, agbno = ino >> (self._agblklog + self._inopblog), (ino >> self._inopblog) & ((1 << self._agblklog) - 1)
        if ino <= 0 or agno >= self._agcount or agbno >= self._agblocks:
            self._corrupt(ino, "the inode number is outside the filesystem")
        slot = ino & ((1 << self._inopblog) - 1)
        raw = self._block(agno * self._agblocks + agbno)[slot * self._isize:(slot + 1) * self._isize]
        (magic, mode, version, fmt, uid, gid, big_nextents, mtime, size, nextents, forkoff,
         flags) = _INODE.unpack_from(raw)
        flags2, own = _INODE3.unpack_from(raw, 100) if self._v5 else (0, ino)
        if magic != b"IN" or version not in ((3,) if self._v5 else (1, 2)) or own != ino:
            self._corrupt(ino, "not an inode")
        if mode == 0:
            self._corrupt(ino, "a directory entry names a free inode")
        if flags2 & _DIFLAG2_NREXT64:
            nextents = big_nextents
        if flags2 & _DIFLAG2_BIGTIME:
            seconds, nanos = divmod(mtime, 10 ** 9)
            seconds -= _BIGTIME_EPOCH
        else:
            seconds, nanos = (mtime >> 32) - (1 << 32 if mtime >> 63 else 0), mtime & 0xFFFFFFFF  # signed seconds
        litino = self._isize - self._core
        fork = raw[self._core:self._core + (forkoff * 8 if forkoff else litino)]
        if forkoff * 8 >= litino or size < 0 or nextents > self._dblocks:
            self._corrupt(ino, "bad fork offset, size or extent count")
        return self._inodes.put(ino, _Inode(ino, mode, fmt, uid, gid, size, seconds + nanos / 1e9, nextents,
                                            bool(flags & _DIFLAG_REALTIME), fork))

    def _entry(self, path: str, name: str, ino: int) -> Entry:
        inode = self._inode(ino)
        kinds = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink"}
        kind = kinds.get(stat.S_IFMT(inode.mode), "other")
        formats = {"dir": (_LOCAL, _EXTENTS, _BTREE_FORMAT), "file": (_EXTENTS, _BTREE_FORMAT),
                   "symlink": (_LOCAL, _EXTENTS)}
        if inode.fmt not in formats.get(kind, (inode.fmt,)):
            self._corrupt(ino, f"a {kind} with data fork format {inode.fmt}")
        target = self._target(inode) if kind == "symlink" else None
        return Entry(path, name, kind, inode.size, inode.mode & 0o7777, inode.uid, inode.gid, inode.mtime, target,
                     ino)

    # ---- block maps and reads -------------------------------------------------------------------------
    def _read(self, offset: int, size: int) -> bytes:
        data = self._w.read(offset, size)
        if len(data) != size:
            raise CorruptObject(f"{self._where}: bytes {offset}..{offset + size} are past the partition's end")
        return data

    def _linear(self, ino: int, fsblock: int, count: int = 1) -> int:
        """The block's number counted from the partition's start; an AG's blocks are numbered
        agblklog bits wide, so a filesystem block number has unused gaps between AGs."""
        agno, agbno = fsblock >> self._agblklog, fsblock & ((1 << self._agblklog) - 1)
        if agno >= self._agcount or agbno + count > self._agblocks:
            self._corrupt(ino, f"blocks {fsblock}+{count} are outside the filesystem")
        return agno * self._agblocks + agbno

    def _block(self, linear: int) -> bytes:
        """One metadata block, through the cache."""
        data = self._blocks.get(linear)
        if data is None:
            data = self._blocks.put(linear, self._read(linear * self._bs, self._bs))
        return data

    def _extents(self, inode: _Inode) -> list[_Extent]:
        """The inode's block map, in file order, each extent checked to lie inside the filesystem."""
        if inode.extents is None:
            if inode.fmt == _EXTENTS:
                if inode.nextents * 16 > len(inode.fork):
                    self._corrupt(inode.ino, "more extents than its inode holds")
                extents = _records(inode.fork, 0, inode.nextents)
            elif inode.fmt == _BTREE_FORMAT:
                extents = self._bmbt(inode)
            else:
                self._corrupt(inode.ino, f"data fork format {inode.fmt} has no block map")
            end = 0
            for e in extents:
                if e.length == 0 or e.offset < end:
                    self._corrupt(inode.ino, "its extents overlap or are out of order")
                self._linear(inode.ino, e.block, e.length)
                end = e.offset + e.length
            inode.extents = extents
        return inode.extents

    def _bmbt(self, inode: _Inode) -> list[_Extent]:
        """The extent records in the leaves of the inode's bmbt, left to right (depth first from the
        root in the inode). Levels must fall by one per step and no block may be visited twice, so a
        damaged tree cannot loop; leaves hold at least one record each, so the walk is bounded by
        nextents."""
        fork, ino = inode.fork, inode.ino
        level, numrecs = _BMDR.unpack_from(fork)
        room = (len(fork) - _BMDR.size) // 16
        if not 0 < level < _MAX_LEVELS or not 0 < numrecs <= room:
            self._corrupt(ino, "bad bmbt root")
        stack = [(ptr, level - 1) for ptr in reversed(struct.unpack_from(f">{numrecs}Q", fork, 4 + room * 8))]
        seen: set[int] = set()
        out: list[_Extent] = []
        room = (self._bs - self._bmbt_hdr) // 16
        while stack:
            ptr, level = stack.pop()
            if ptr in seen:
                self._corrupt(ino, f"bmbt block {ptr} is linked twice")
            seen.add(ptr)
            blk = self._block(self._linear(ino, ptr))
            magic, got_level, n = _BTREE.unpack_from(blk)
            owner = _BE64.unpack_from(blk, 56)[0] if self._v5 else ino
            if magic != self._bmbt_magic or got_level != level or owner != ino or not 0 < n <= room:
                self._corrupt(ino, f"bmbt block {ptr} is not one of its level-{level} blocks")
            if level:
                ptrs = struct.unpack_from(f">{n}Q", blk, self._bmbt_hdr + room * 8)
                stack += [(p, level - 1) for p in reversed(ptrs)]
            else:
                out += _records(blk, self._bmbt_hdr, n)
                if len(out) > inode.nextents:
                    break
        if len(out) != inode.nextents:
            self._corrupt(ino, f"its bmbt holds {len(out)} extents, not {inode.nextents}")
        return out

    def _read_range(self, inode: _Inode, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size) of the inode's data. Holes and unwritten extents are zeros,
        and cost no read."""
        extents, bs = self._extents(inode), self._bs
        out = bytearray(size)
        first = bisect_right(extents, offset // bs, key=lambda e: e.offset) - 1
        for e in extents[max(first, 0):]:
            lo, hi = max(offset, e.offset * bs), min(offset + size, (e.offset + e.length) * bs)
            if lo >= offset + size:
                break
            if lo < hi and not e.unwritten:
                start = self._linear(inode.ino, e.block) * bs + lo - e.offset * bs
                out[lo - offset:hi - offset] = self._read(start, hi - lo)
        return bytes(out)

    # ---- directories -------------------------------------------------------------------------------------
    def _names(self, inode: _Inode) -> dict[str, int]:
        """name -> inode number of a directory's entries, without . and .."""
        names = self._dirs.get(inode.ino)
        if names is None:
            raw = self._shortform(inode) if inode.fmt == _LOCAL else self._dir_blocks(inode)
            names = {}
            for name, child in raw:
                if b"/" in name or b"\0" in name:
                    self._corrupt(inode.ino, f"directory entry {name!r} is not a name")
                if name not in (b".", b".."):
                    names[name.decode("utf-8", "surrogateescape")] = child
            self._dirs.put(inode.ino, names)
        return names

    def _shortform(self, inode: _Inode) -> Iterator[tuple[bytes, int]]:
        """A small directory inside its inode: count, 4- or 8-byte inode numbers, the parent, then
        entries of name length, offset (2 bytes), name, file type (with ftype) and inode number."""
        sf = inode.fork[:inode.size]
        if len(sf) != inode.size or len(sf) < 6:
            self._corrupt(inode.ino, "shortform directory larger than its inode")
        width = 8 if sf[1] else 4
        pos = 2 + width
        for _ in range(sf[0]):
            n = sf[pos] if pos < len(sf) else 0
            name, pos = sf[pos + 3:pos + 3 + n], pos + 3 + n + self._ftype
            if n == 0 or pos + width > len(sf):
                self._corrupt(inode.ino, "shortform directory entry overruns the directory")
            yield name, int.from_bytes(sf[pos:pos + width], "big")
            pos += width

    def _dir_blocks(self, inode: _Inode) -> Iterator[tuple[bytes, int]]:
        """The entries of a block, leaf or node directory: every mapped directory block of the data
        space (below XFS_DIR2_LEAF_OFFSET and the directory's size) holds data entries."""
        per, dirbs = 1 << self._dirblklog, self._bs << self._dirblklog
        limit, done = min(inode.size, _LEAF_OFFSET) // dirbs, -1
        for e in self._extents(inode):
            for db in range(max(e.offset // per, done + 1), min(-(-(e.offset + e.length) // per), limit)):
                done = db
                yield from self._data_block(inode, self._read_range(inode, db * dirbs, dirbs))

    def _data_block(self, inode: _Inode, blk: bytes) -> Iterator[tuple[bytes, int]]:
        """Entries of one directory data block: inode number (8 bytes), name length, name, file
        type (with ftype), tag (2 bytes), 8-byte aligned; unused stretches start with 0xffff and
        their length. A single-block directory ends with its hash leaf and a count of it."""
        end = len(blk)
        if blk[:4] == self._dir_magic[0]:
            end -= 8 + 8 * _BE32.unpack_from(blk, end - 8)[0]
        elif blk[:4] != self._dir_magic[1]:
            self._corrupt(inode.ino, "directory block has a bad magic number")
        if end < self._dir_hdr or self._v5 and _BE64.unpack_from(blk, 40)[0] != inode.ino:
            self._corrupt(inode.ino, "directory block is not its own, or its leaf overruns it")
        pos = self._dir_hdr
        while pos < end:
            if blk[pos:pos + 2] == _FREE_TAG:
                size = _BE16.unpack_from(blk, pos + 2)[0]
            else:
                n = blk[pos + 8] if pos + 8 < end else 0
                size = (8 + 1 + n + self._ftype + 2 + 7) & ~7
                if n and pos + size <= end:
                    yield blk[pos + 9:pos + 9 + n], _BE64.unpack_from(blk, pos)[0]
                else:
                    size = 0
            if size < 8 or size % 8 or pos + size > end:
                self._corrupt(inode.ino, f"directory entry at byte {pos} of a block overruns it")
            pos += size

    # ---- symlinks --------------------------------------------------------------------------------------
    def _target(self, inode: _Inode) -> str:
        """A symlink's target: inside the inode, or in blocks (on v5, each extent starts with a header
        saying which bytes of the target it holds)."""
        size, ino = inode.size, inode.ino
        if not 0 < size <= _SYMLINK_MAX:
            self._corrupt(ino, f"symlink target of {size} bytes")
        if inode.fmt == _LOCAL:
            raw = inode.fork[:size]
        elif not self._v5:
            raw = self._read_range(inode, 0, size)
        else:
            raw = b""
            for e in self._extents(inode)[:3]:
                if len(raw) == size:
                    break
                blk = self._read(self._linear(ino, e.block, e.length) * self._bs, min(e.length * self._bs,
                                                                                     56 + size - len(raw)))
                magic, offset, n = _SYMLINK.unpack_from(blk)
                if magic != b"XSLM" or offset != len(raw) or not 0 < n <= len(blk) - 56 or \
                        _BE64.unpack_from(blk, 32)[0] != ino:
                    self._corrupt(ino, "bad remote symlink block")
                raw += blk[56:56 + n]
        if len(raw) != size:
            self._corrupt(ino, "symlink target shorter than its size")
        return raw.decode("utf-8", "surrogateescape")
