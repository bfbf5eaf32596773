"""Copy files and directory trees out of a snapshot's filesystem.

Regular files keep their bytes, mode and mtime, and stay sparse (all-zero blocks become holes);
symlinks are recreated as symlinks; owners are kept when running as root. A file that cannot be
read (a damaged chunk under it) fails alone, with the range named; the rest is extracted and the
failures are reported at the end.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agent.browse.fs import Entry, Filesystem
from agent.browse.image import RangeUnreadable
from agent.errors import AgentError, CorruptObject, TargetError

_WRITES_QUEUED = 4  # blocks (4 MiB each) waiting for the disk: bounds memory
_HOLE_STEP = 64 << 10  # zeros are found (and left as holes) in steps of this size


@dataclass
class ExtractResult:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)  # "path: what went wrong"


def extract(fs: Filesystem, path: str, dest: Path) -> ExtractResult:
    """`path` (a file, symlink or directory) into the directory `dest`, under its own name."""
    res = ExtractResult()
    top = fs.stat(path)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (top.name if top.path != "/" else "")
    if top.kind == "dir":
        target.mkdir(exist_ok=True)
        dirs = [(top, target)]
        for entry in fs.walk(top.path):
            out = target / os.path.relpath(entry.path, top.path if top.path != "/" else "/")
            if entry.kind == "dir":
                out.mkdir(exist_ok=True)
                dirs.append((entry, out))
                res.dirs += 1
            else:
                _one(fs, entry, out, res)
        for entry, out in reversed(dirs):  # after their contents: writing a file changes a directory's mtime
            if entry.path != "/":  # the filesystem's root is `dest` itself: left as the user made it
                _finish(entry, out, follow=True)
    else:
        _one(fs, top, target, res)
    return res


def _one(fs: Filesystem, entry: Entry, out: Path, res: ExtractResult) -> None:
    if out.exists() or out.is_symlink():
        raise TargetError(f"{out} already exists", hint="extract into an empty directory")
    try:
        if entry.kind == "symlink":
            os.symlink(entry.target or "", out)
            _finish(entry, out, follow=False)
            res.symlinks += 1
        elif entry.kind == "file":
            res.bytes += _write(fs, entry, out)
            _finish(entry, out, follow=True)
            res.files += 1
    except AgentError as exc:
        res.failed.append(f"{entry.path}: {exc}")


def _write(fs: Filesystem, entry: Entry, out: Path) -> int:
    """The file's data into a new file at `out`, holes left as holes; bytes written."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        runs = fs.runs(entry)
        written = _write_runs(fs, entry, runs, fd) if runs is not None else _write_blocks(fs, entry, fd)
        os.ftruncate(fd, entry.size)
    except OSError as exc:
        raise TargetError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return written


def _write_runs(fs: Filesystem, entry: Entry, runs: list[tuple[int, int, int]], fd: int) -> int:
    """Straight from the image, along the file's extents: the snapshot's chunks are fetched and
    decompressed by every worker ahead of the writes, as a restore does, and written from views of
    them. What the image holds as zeros inside an extent becomes a hole too."""
    window = fs.window
    assert window is not None
    written = 0
    try:
        for k, at, n, piece in window.image.stream([(window.start + part, n) for _, part, n in runs]):
            if piece is not None:
                _pwrite_all(fd, piece, runs[k][0] + at)
                written += n
    except RangeUnreadable as exc:
        lo = runs[exc.k][0] + exc.at
        raise CorruptObject(f"{fs.where}: {entry.path}: bytes {lo}..{lo + exc.length} cannot be read ({exc})") from None
    return written


def _write_blocks(fs: Filesystem, entry: Entry, fd: int) -> int:
    """Through the filesystem reader, whose blocks a second thread writes while the next are read
    and decompressed; all-zero blocks are left as holes."""
    written = 0
    with ThreadPoolExecutor(1, thread_name_prefix="extract-write") as pool:
        pending: deque[Future] = deque()
        for off, data in fs.read_file(entry):
            for lo, hi in _nonzero(data):  # the rest stays a hole: ftruncate sets the size
                pending.append(pool.submit(_pwrite_all, fd, memoryview(data)[lo:hi], off + lo))
                written += hi - lo
            while len(pending) > _WRITES_QUEUED:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
    return written


def _nonzero(data: bytes, step: int = _HOLE_STEP) -> list[tuple[int, int]]:
    """The stretches of `data` that are not all zeros, in whole `step`s: a hole can start or end
    inside a block the reader returns."""
    out: list[tuple[int, int]] = []
    zeros = bytes(step)
    for lo in range(0, len(data), step):
        hi = min(lo + step, len(data))
        if data[lo:hi] == zeros[:hi - lo]:
            continue
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _pwrite_all(fd: int, data: bytes | memoryview, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view, off = view[n:], off + n


def _finish(entry: Entry, out: Path, *, follow: bool) -> None:
    """Mode, owner (as root) and mtime, as the snapshot holds them."""
    if os.geteuid() == 0:
        os.lchown(out, entry.uid, entry.gid)
    if follow:
        os.chmod(out, entry.mode)
    os.utime(out, (entry.mtime, entry.mtime), follow_symlinks=follow)
