"""The restore journal: what an interrupted restore already wrote, so the same command resumes.

One append-only text file of JSON lines, mode 0600: beside an image file (`.<name>.agent-restore`),
or in the cache directory for a disk (keyed by the disk's identity, which survives reboots and
renaming). The first line says what is restored (snapshot, window, size) and to which object; then
each finished work unit appends its target ranges (`w`), and a flusher thread appends `f` after an
fdatasync of the target made everything recorded before it durable.

Which records count on resume (docs/restore.md, "Resume"):
- flushed ones (`f`), always: the data reached the disk before they were recorded;
- written but not yet flushed ones only in the same boot and the same attachment of the target
  (kernel boot id, disk sequence number / inode): the page cache still holds or has written those
  bytes, since a killed process loses nothing it wrote. After a reboot or a re-attached disk they
  are fetched again. This keeps a resumed restore within a few megabytes of the remaining work
  without flushing after every unit, which would have made a restore to an image file three times
  slower (the data would go to disk at its write speed instead of into the page cache).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import TargetError
from agent.restore.target import open_existing, open_target

VERSION = 1
_SUFFIX = ".agent-restore"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""  # never equal to a recorded one: only flushed records count


def _sysfs(rdev: int) -> Path:
    return Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def device_key(rdev: int) -> str:
    """What names a disk across reboots and renames: serial / WWID, a loop device's backing file and
    offset, else the device numbers (then a resume after renumbering starts over)."""
    sysdir = _sysfs(rdev)
    for name in ("device/wwid", "device/serial", "serial", "wwid"):
        value = _read(sysdir / name)
        if value:
            return f"{name.split('/')[-1]}:{value}"
    backing = _read(sysdir / "loop" / "backing_file")
    if backing:
        return f"loop:{backing}@{_read(sysdir / 'loop' / 'offset') or 0}"
    return f"dev:{os.major(rdev)}:{os.minor(rdev)}"


def attachment(st: os.stat_result) -> str:
    """Changes whenever the object is replaced or a disk is attached again (diskseq, Linux 5.15+)."""
    if stat.S_ISBLK(st.st_mode):
        seq = _read(_sysfs(st.st_rdev) / "diskseq")
        return f"blk:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}:{seq}"
    return f"file:{st.st_dev}:{st.st_ino}"


def journal_path(target: str, st: os.stat_result | None, cache_dir: Path | None) -> Path | None:
    """Where the journal of a restore to `target` lives; None for a disk when there is no cache directory."""
    if st is not None and stat.S_ISBLK(st.st_mode):
        if cache_dir is None:
            return None
        key = hashlib.sha256(device_key(st.st_rdev).encode()).hexdigest()[:32]
        return cache_dir / "restore-journals" / key
    p = Path(os.path.abspath(target))
    return p.with_name(f".{p.name}{_SUFFIX}")


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            last_off, last_n = out[-1]
            out[-1] = (last_off, max(last_n, off + n - last_off))
        else:
            out.append((off, n))
    return out


@dataclass
class Header:
    snapshot: str
    window: tuple[int, int]
    size: int
    object: str = ""  # an image file's identity (device, inode); a disk's journal is keyed by its identity

    def matches(self, other: Header) -> bool:
        return (self.snapshot, tuple(self.window), self.size) == (other.snapshot, tuple(other.window), other.size)


@dataclass
class Recorded:
    """A journal as found: its header and the target ranges that count as written."""

    header: Header
    done: list[tuple[int, int]] = field(default_factory=list)

    @property
    def done_bytes(self) -> int:
        return sum(n for _, n in self.done)


def load(path: Path, now_attached: str) -> Recorded | None:
    """The journal at `path`, or None when there is none; a damaged tail (a kill while appending) is
    ignored, an unreadable header is a TargetError."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TargetError(f"cannot read the restore journal {path}: {exc.strerror}") from None
    try:
        head = json.loads(lines[0])
        if head.get("journal") != VERSION:
            raise ValueError
        rec = Recorded(Header(str(head["snapshot"]), (int(head["window"][0]), int(head["window"][1])),
                              int(head["size"]), str(head.get("object", ""))))
    except (IndexError, ValueError, KeyError, TypeError):
        raise TargetError(f"the restore journal {path} is damaged",
                          hint="add --force to start the restore over (it deletes the journal)") from None
    me = boot_id()
    runs: list[tuple[bool, list[list[tuple[int, int]]], list[int]]] = []  # (session ok, units, flushed count)
    for line in lines[1:]:
        try:
            doc = json.loads(line)
        except ValueError:
            break  # torn by a kill while appending: nothing after it was written
        if "run" in doc:
            runs.append((bool(me) and doc.get("boot") == me and doc.get("attached") == now_attached, [], [0]))
        elif runs and "w" in doc:
            runs[-1][1].append([(int(a), int(b)) for a, b in doc["w"]])
        elif runs and "f" in doc:
            runs[-1][2][0] = max(runs[-1][2][0], int(doc["f"]))
    for session_ok, units, flushed in runs:
        for unit in units if session_ok else units[:flushed[0]]:
            rec.done.extend(unit)
    rec.done = _merge(rec.done)
    return rec


class Journal:
    """The open journal of one restore run: `written` after each unit, a flusher thread that makes
    them durable, `finish` at the end. Thread-safe."""

    def __init__(self, path: Path, header: Header, attached: str, fresh: bool, flush_fd: int,
                 interval: float = 5.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd_target = flush_fd
        self._units = 0  # `w` records of this run
        self._flushed = 0  # of which the first this many are durable
        self._stop = threading.Event()
        self.error: OSError | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | (os.O_TRUNC if fresh else 0)
            self._fd = os.open(path, flags, 0o600)
            os.fchmod(self._fd, 0o600)
            if fresh:
                self._append({"journal": VERSION, "snapshot": header.snapshot, "window": list(header.window),
                              "size": header.size, "object": header.object})
            self._append({"run": 1, "boot": boot_id(), "attached": attached})
            os.fsync(self._fd)
        except OSError as exc:
            raise TargetError(f"cannot write the restore journal {path}: {exc.strerror}",
                              hint="a restore records its progress there so that it can resume") from None
        self._thread = threading.Thread(target=self._flusher, args=(interval,), name="restore-journal", daemon=True)
        self._thread.start()

    def _append(self, doc: dict) -> None:
        line = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        os.write(self._fd, line)  # O_APPEND, one write: a kill leaves a whole line or a torn last one

    def written(self, ranges: list[tuple[int, int]]) -> None:
        """Record target ranges whose writes have returned."""
        if not ranges:
            return
        with self._lock:
            self._append({"w": [list(r) for r in _merge(ranges)]})
            self._units += 1

    def flush(self) -> None:
        """fdatasync the target, then mark every unit recorded before it as flushed."""
        with self._lock:
            count = self._units  # only units whose writes returned before the fdatasync starts
        if count == self._flushed:
            return
        os.fdatasync(self._fd_target)
        with self._lock:
            self._append({"f": count})
            self._flushed = count
        os.fsync(self._fd)

    def _flusher(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except OSError as exc:  # the write path reports the same failure with its context
                self.error = exc
                return

    def close(self, flush: bool = False) -> None:
        """Stop the flusher, before the target's descriptor is closed (a reused descriptor number
        must never be flushed in its place); with `flush`, make what was recorded durable (an
        interrupted run). Closing again does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if flush:
            try:
                self.flush()
            except OSError:
                pass  # the target failed: the records stay unflushed and count only in this boot
        try:
            os.close(self._fd)
        except OSError:
            pass

    def remove(self) -> None:
        """The restore finished: nothing to resume."""
        self.close()
        self.path.unlink(missing_ok=True)


def covered(done: list[tuple[int, int]], at: int, length: int) -> bool:
    """Whether [at, at+length) lies inside one of the merged, sorted `done` ranges."""
    i = bisect.bisect_right(done, (at, 1 << 62)) - 1
    return i >= 0 and done[i][0] <= at and at + length <= done[i][0] + done[i][1]


@dataclass
class Prepared:
    """An opened target, with the journal to record into and what an interrupted run already wrote."""

    fd: int
    kind: str  # "block" or "file"
    created: bool  # an image file this run created (removed again if the disk fills)
    journal: Journal | None
    done: list[tuple[int, int]] = field(default_factory=list)


def prepare(target: str, header: Header, force: bool, delta: bool, journal_dir: Path | None,
            interval: float, disk_size: int | None = None, resumable: bool = True) -> Prepared:
    """Open the target for a restore: resume a matching interrupted one, refuse one of another
    snapshot (unless `force`), or start afresh. A delta restore checks every chunk anyway, so it
    needs no journal and replaces any it finds. `disk_size`: an image file's size when it is not
    the size of what is written (agent.restore.anywhere)."""
    file_size = disk_size or header.size
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    path = journal_path(target, st, journal_dir) if resumable else None
    if delta and st is not None:
        fd, kind = open_existing(target, header.size, trim_to=file_size)
        if path is not None:
            path.unlink(missing_ok=True)
        return Prepared(fd, kind, False, None)
    rec = load(path, attachment(st)) if path is not None and st is not None and not force else None
    if rec is not None and st is not None:
        short = rec.header.snapshot[:8]
        if not rec.header.matches(header):
            what = "snapshot" if rec.header.snapshot != header.snapshot else "part of snapshot"
            raise TargetError(f"{target} holds an interrupted restore of {what} {short}, not of this one",
                              hint=f"run that restore again to finish it, or add --force to start over "
                                   f"(journal {path})")
        if rec.header.object and rec.header.object != attachment(st):
            raise TargetError(f"the restore journal {path} describes another file than {target}",
                              hint="add --force to start over")
        fd, kind = open_existing(target, header.size, trim_to=None)
        if kind == "file" and os.fstat(fd).st_size != file_size:
            os.close(fd)
            raise TargetError(f"{target} changed size since the interrupted restore of snapshot {short}",
                              hint="add --force to start over")
        journal = Journal(path, header, attachment(os.fstat(fd)), False, fd, interval)  # type: ignore[arg-type]
        return Prepared(fd, kind, False, journal, rec.done)
    if path is not None and force:
        path.unlink(missing_ok=True)
    fd, kind, created = open_target(target, header.size, force, disk_size)
    if path is None:
        return Prepared(fd, kind, created, None)
    here = os.fstat(fd)
    fresh = Header(header.snapshot, header.window, header.size, attachment(here) if kind == "file" else "")
    try:
        journal = Journal(path, fresh, attachment(here), True, fd, interval)
    except TargetError:
        os.close(fd)
        raise
    return Prepared(fd, kind, created, journal)
