"""Open what is being backed up: a block device or an image file.

Reports size, identity (so `--at` and parents match the same disk), data extents (holes of sparse
files are skipped without reading them), and whether a block device is mounted read-write.

A backup reads the bulk of the source through a second descriptor opened with O_DIRECT, when the
filesystem allows it: the disk's blocks go straight into the pipeline's aligned buffers instead of
being copied out of the page cache, which halves the system time of an incremental night, and the
server's cached working set (its database, its files) is not evicted by a pass over the whole disk.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from agent.errors import SourceError

_BLKGETSIZE64 = 0x80081272
#: holes smaller than this are read (the kernel returns zeros without disk I/O); skipping tiny
#: holes would restart the chunker on every fragment of an ext4 image and ruin deduplication
HOLE_MIN = 1 << 20
#: offsets, lengths and buffer addresses of direct reads are multiples of this (every logical block size)
DIRECT_ALIGN = 4096


@dataclass
class Source:
    path: str
    fd: int
    kind: str  # "block" or "file"
    size: int
    identity: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    direct_fd: int | None = None  # the same file opened with O_DIRECT, when the filesystem allows it
    direct_ok: bool = True  # False once direct I/O was refused: every read goes through the cache
    opened: tuple[int, ...] | None = None  # an image file's state when opened (file_state)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def read_into(self, view: memoryview, offset: int) -> int:
        """One read of up to len(view) bytes at `offset` into `view` (short only at the end of the
        source). Direct when offset and length are aligned; the buffer must then be aligned too
        (agent.backup.buffers hands out page-aligned ones). A filesystem or buffer that refuses direct
        I/O (EINVAL) turns it off for the rest of the run: the page cache gives the same bytes.
        Safe from several reading threads: the descriptor stays open until `close`."""
        if self.direct_ok and self.direct_fd is not None and not (offset | len(view)) % DIRECT_ALIGN:
            try:
                return os.preadv(self.direct_fd, [view], offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct_ok = False
        return os.preadv(self.fd, [view], offset)

    def close(self) -> None:
        if self.direct_fd is not None:
            os.close(self.direct_fd)
            self.direct_fd = None
        os.close(self.fd)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def data_extents(self) -> Iterator[tuple[int, int]]:
        """(start, end) ranges holding data; everything else reads as zeros and is a hole."""
        if self.kind != "file":
            yield 0, self.size
            return
        pos = 0
        cur_start: int | None = None
        cur_end = 0
        while pos < self.size:
            try:
                start = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no more data: the rest is a hole
                    break
                if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # filesystem without hole support
                    yield 0, self.size
                    return
                raise
            end = min(os.lseek(self.fd, start, os.SEEK_HOLE), self.size)
            if cur_start is not None and start - cur_end < HOLE_MIN:
                cur_end = end
            else:
                if cur_start is not None:
                    yield cur_start, cur_end
                cur_start, cur_end = start, end
            pos = end
        if cur_start is not None:
            yield cur_start, min(cur_end, self.size)

    def current_size(self) -> int:
        return size_of(self.fd, self.kind)

    def changed_since_open(self) -> bool:
        """True when an image file was written while it was read (in place: same size and inode, so
        `current_size` and `same_object` cannot tell). Always False for a block device: writes to it
        do not change its times (docs/backup.md, "Consistent images")."""
        if self.kind != "file" or self.opened is None:
            return False
        return file_state(os.fstat(self.fd)) != self.opened

    def same_object(self) -> bool:
        """False when the path now names another file or device (replaced mid-backup)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (self.identity.get("st_dev"), self.identity.get("st_ino"))


def file_state(st: os.stat_result) -> tuple[int, ...]:
    """What any write to a file changes: modification and change times, size, inode."""
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


def size_of(fd: int, kind: str) -> int:
    if kind == "block":
        buf = fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8)
        return struct.unpack("Q", buf)[0]
    return os.fstat(fd).st_size


def open_source(path: str, direct: bool = False) -> Source:
    """Open `path` for reading; with `direct`, also open it with O_DIRECT for `Source.read_into`."""
    # O_NONBLOCK until the type is known: opening a FIFO (or a tty) for reading would otherwise wait
    # for a writer forever; it is cleared again for the disk or file
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        try:
            fd = os.open(path, flags)  # O_NOATIME needs ownership
        except PermissionError:
            raise SourceError(f"permission denied reading {path}",
                              hint="run as root, or add the user to the 'disk' group for block devices") from None
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist", hint="check the device or image path (lsblk lists disks)") from None
    except IsADirectoryError:
        raise SourceError(f"{path} is a directory; agent backs up whole disks, partitions or image files") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode):
        kind = "block"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        os.close(fd)
        raise SourceError(f"{path} is neither a block device nor a regular file")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    try:  # one pass front to back: let the kernel read further ahead
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except OSError:
        pass
    identity = {"st_dev": st.st_dev, "st_ino": st.st_ino}
    src = Source(os.path.abspath(path), fd, kind, size_of(fd, kind), identity,
                 opened=file_state(st) if kind == "file" else None)
    if direct:
        src.direct_fd = open_direct(path, st)
    if kind == "block":
        identity.update(_block_identity(st.st_rdev))
        mounted = mounts_of(st.st_rdev)
        rw = [m for m in mounted if m[1] == "rw"]
        if rw:
            src.warnings.append(
                f"{path} (or a partition of it) is mounted read-write at {', '.join(m[0] for m in rw)}: the image may "
                "be inconsistent. Use a filesystem freeze or an LVM snapshot (see docs/backup.md, snapshot hooks)")
    return src


def open_direct(path: str, st: os.stat_result, write: bool = False) -> int | None:
    """The same object opened with O_DIRECT (for reading, or with `write` for writing only), or None
    where that is refused (tmpfs before Linux 6.6, some network and FUSE filesystems) or the path
    now names something else."""
    if not getattr(os, "O_DIRECT", 0):
        return None
    flags = (os.O_WRONLY if write else os.O_RDONLY) | os.O_CLOEXEC | os.O_DIRECT
    for extra in (getattr(os, "O_NOATIME", 0), 0):
        try:
            fd = os.open(path, flags | extra)
        except PermissionError:
            continue
        except OSError:
            return None
        same = os.fstat(fd)
        if (same.st_dev, same.st_ino) == (st.st_dev, st.st_ino):
            return fd
        os.close(fd)
        return None
    return None


def _block_identity(rdev: int) -> dict:
    major, minor = os.major(rdev), os.minor(rdev)
    ident: dict = {"major": major, "minor": minor}
    sysdir = Path(f"/sys/dev/block/{major}:{minor}")
    for name in ("device/serial", "device/wwid", "device/model"):
        try:
            ident[name.split("/")[-1]] = (sysdir / name).read_text().strip()
        except OSError:
            pass
    by_id = Path("/dev/disk/by-id")
    if by_id.is_dir():
        names = sorted(p.name for p in by_id.iterdir() if _rdev_of(p) == rdev)
        if names:
            ident["by_id"] = names
    return ident


def _rdev_of(p: Path) -> int | None:
    try:
        return os.stat(p).st_rdev
    except OSError:
        return None


def mounts_of(rdev: int) -> list[tuple[str, str]]:
    """(mount point, 'rw'|'ro') for the device and its partitions, from /proc/self/mountinfo."""
    major, minor = os.major(rdev), os.minor(rdev)
    devs = {f"{major}:{minor}"}
    sysdir = Path(f"/sys/dev/block/{major}:{minor}")
    try:
        for child in sysdir.iterdir():
            dev_file = child / "dev"
            if dev_file.is_file():
                devs.add(dev_file.read_text().strip())
    except OSError:
        pass
    out: list[tuple[str, str]] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) > 5 and parts[2] in devs:
            opts = parts[5].split(",")
            out.append((parts[4], "rw" if "rw" in opts else "ro"))
    return out
