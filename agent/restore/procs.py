"""Opening and writing a local restore's chunks in worker processes, so that two cores work at once.

Why: a restore from a local repository is CPU-bound (a day3 restore: 1.8 s of zstd, 0.4 s of
BLAKE3, 0.5 s of buffered writes, 0.2 s of AES-GCM per 2.6 GB), and each chunk passes through
three native calls that release the interpreter lock and must take it back. With threads, the
workers of a day3 restore spent 2-2.4 s of their 5 s inside those calls waiting for the lock or
for a core, and the cores stood idle a quarter of the time. Processes share no lock: the same
work kept both cores busy (the fetch loop took 2.2-2.4 s in a prototype against 2.5-2.65 s).

Who does what. The parent keeps everything that has state: it reads each group's pack range
through the storage stack as before (so accounting, bandwidth limits and retries see every read
once), keeps the journal and reports progress. A worker, forked once the plan is made, receives
(group, slot): the range's bytes, copied by the parent into a slot of an anonymous shared
mapping. It authenticates, decompresses and checks each chunk (`fetch.open_chunks`), writes it
into the target through its own `DirectWriter`, and reports the ranges it wrote: only those are
journaled, as a range is with threads once the writer has written it.

Failures: a worker sends what went wrong (an exception), which the parent raises; a worker that
dies (killed, out of memory) is an error naming it. Workers exit when the parent closes their
pipe, and die with it if it is killed (PR_SET_PDEATHSIG), so a resumed restore never races an
orphan. Ctrl-C reaches the whole process group: workers ignore it and the parent stops them.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import pickle
import signal
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe, wait

from agent.errors import AgentError
from agent.repo.repository import Repository
from agent.restore.direct import DirectWriter, Mode
from agent.restore.fetch import Blob, Opened, open_chunks
from agent.restore.writer import runs

WORKERS = 2  # one per core of the bench host; a third held 30 MB more and was no faster
SLOTS = 2  # per worker: one range being opened while the next is already copied in
FLUSH = 4 << 20  # a worker writes a group's chunks in runs of about this many bytes
_PR_SET_PDEATHSIG = 1


@dataclass
class Done:
    """What a worker did with one group."""

    job: int
    written: int  # bytes written
    bad: list[tuple[int, int]]  # damaged ranges (target offsets), with ignore_errors
    done: list[tuple[int, int]]  # ranges written, for the journal
    direct_bytes: int  # the worker's total so far


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def usable() -> bool:
    """Whether this system can fork workers and has the cores to make them worth it."""
    return hasattr(os, "fork") and cores() >= 2


class Workers:
    """Worker processes forked with the plan (`groups`): `submit(job, data)` hands one group's
    range to a worker, `results()` yields what the workers finished. Use as a context manager:
    leaving it stops them (killed when leaving on an exception)."""

    def __init__(self, repo: Repository, groups: list[tuple[str, list[Blob]]], fd: int, target: str,
                 window: tuple[int, int], ignore_errors: bool, direct: Mode, slot_size: int,
                 workers: int = WORKERS) -> None:
        self._slot_size = slot_size
        self._slab = mmap.mmap(-1, workers * SLOTS * slot_size)  # MAP_SHARED: the workers see the parent's copies
        self._free = list(range(workers * SLOTS))
        self._conns: list[Connection] = []
        self._pids: list[int] = []
        self._busy: dict[int, int] = {}  # in flight per worker
        self._slot_of: dict[int, int] = {}  # job -> slot
        self.direct_bytes: dict[int, int] = {}
        parent = os.getpid()
        # the write token: one byte in a pipe, taken by a worker for each write through the page
        # cache. A buffered write holds the file's inode lock, and a second writer spins on it in
        # the kernel (burning the core the other worker needs); waiting for the token it sleeps.
        # Direct writes of whole blocks go to the disk side by side (restore.direct)
        self._token = os.pipe()
        os.write(self._token[1], b"t")
        try:
            for i in range(workers):
                self._fork(i, parent, repo, groups, fd, target, window, ignore_errors, direct)
        except BaseException:  # no room for another process: stop the ones started
            self.close(kill=True)
            raise

    def _fork(self, i: int, parent: int, repo: Repository, groups: list[tuple[str, list[Blob]]], fd: int,
              target: str, window: tuple[int, int], ignore_errors: bool, direct: Mode) -> None:
        ours, theirs = Pipe(duplex=True)
        with warnings.catch_warnings():
            # Python 3.12 warns about forking with threads (the journal's flusher, a progress
            # display): the child only opens chunks and writes them, and takes no lock of theirs
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                ours.close()
                for c in self._conns:
                    c.close()
                _die_with(parent)
                _serve(theirs, repo, groups, self._slab, self._slot_size, fd, target, window, ignore_errors, direct,
                       self._token)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        self._conns.append(ours)
        self._pids.append(pid)
        self._busy[i] = 0

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.close(kill=exc is not None)

    @property
    def count(self) -> int:
        """The number of workers."""
        return len(self._pids)

    @property
    def full(self) -> bool:
        """Whether every slot holds a range not yet opened (`results` frees them)."""
        return not self._free

    @property
    def pending(self) -> int:
        return len(self._slot_of)

    def submit(self, job: int, data: bytes | None, unreadable: str = "") -> None:
        """Hand group `job`'s range (None when unreadable, with why) to the least busy worker."""
        slot = self._free.pop()
        n = 0
        if data is not None:
            n = len(data)
            if n > self._slot_size:
                raise AgentError(f"internal: a {n}-byte range exceeds the {self._slot_size}-byte slot")
            at = slot * self._slot_size
            self._slab[at:at + n] = data
        worker = min(self._busy, key=lambda w: self._busy[w])
        self._busy[worker] += 1
        self._slot_of[job] = slot
        self._send(worker, (job, slot, n if data is not None else -1, unreadable))

    def feed(self, read_ranges: Iterable[tuple[int, bytes | None, str]]) -> Iterator[Done]:
        """Hand each (job, range, why unreadable) to a worker as the reads finish, waiting for a free
        slot; yields what the workers finish, until every range handed over is written."""
        for job, data, why in read_ranges:
            while self.full:
                yield from self.results()
            self.submit(job, data, why)
            yield from self.results(block=False)
        while self.pending:
            yield from self.results()

    def results(self, block: bool = True) -> Iterator[Done]:
        """What the workers have finished (waiting for at least one when `block`); raises what a worker raised."""
        ready = wait(self._conns, timeout=None if block else 0)
        for conn in ready:
            assert isinstance(conn, Connection)
            worker = self._conns.index(conn)
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                raise self._ended(worker) from None
            if isinstance(msg, BaseException):
                raise msg
            done: Done = msg
            self._busy[worker] -= 1
            self._free.append(self._slot_of.pop(done.job))
            self.direct_bytes[worker] = done.direct_bytes
            yield done

    def close(self, kill: bool = False) -> None:
        """Stop the workers: after their queued work, or at once with `kill`."""
        for i, conn in enumerate(self._conns):
            if kill:
                try:
                    os.kill(self._pids[i], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                try:
                    conn.send(None)
                except OSError:
                    pass
            conn.close()
        for pid in self._pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._conns, self._pids = [], []
        self._slab.close()
        for end in self._token:
            os.close(end)

    def _send(self, worker: int, msg: object) -> None:
        try:
            self._conns[worker].send(msg)
        except OSError:
            raise self._ended(worker) from None

    def _ended(self, worker: int) -> AgentError:
        return AgentError(f"restore worker process {self._pids[worker]} ended unexpectedly",
                          hint="it may have been killed or run out of memory; run the same restore again to resume")


def _serve(conn: Connection, repo: Repository, groups: list[tuple[str, list[Blob]]], slab: mmap.mmap,
           slot_size: int, fd: int, target: str, window: tuple[int, int], ignore_errors: bool,
           direct: Mode, token: tuple[int, int]) -> None:
    """A worker's loop: open and write each group it is handed, until the parent says stop (None)
    or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    writer = DirectWriter(fd, target, direct, buffered_lock=_Token(token))

    failed = False
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            if failed:  # the parent raises the error it was sent; what it sent meanwhile is dropped
                continue
            job, slot, n, unreadable = msg
            pack_id, group = groups[job]
            at = slot * slot_size
            data = memoryview(slab)[at:at + n] if n >= 0 else None
            try:
                written, bad, done = _write_group(repo, pack_id, group, data, unreadable, ignore_errors, window,
                                                  writer.write)
            except BaseException as exc:  # noqa: BLE001 - the parent raises it
                conn.send(_portable(exc))
                failed = True
                continue
            finally:
                if data is not None:
                    data.release()
            conn.send(Done(job, written, bad, done, writer.direct_bytes))
    finally:
        writer.close()


def _write_group(repo: Repository, pack_id: str, group: list[Blob], data: memoryview | None, unreadable: str,
                 ignore_errors: bool, window: tuple[int, int],
                 write: Callable[[list[memoryview], int], None]) -> tuple[int, list[tuple[int, int]],
                                                                         list[tuple[int, int]]]:
    """Open a group's chunks and write each at every offset it has in `window`: (bytes written,
    damaged ranges, ranges written)."""
    opened = Opened(window)
    for b, raw, _ in open_chunks(repo, pack_id, group, data, unreadable, ignore_errors):
        opened.add(b, raw)
        if opened.batched >= FLUSH:
            _flush(opened.take(), write)
    _flush(opened.take(), write)
    return opened.written, opened.bad, opened.done


def _flush(writes: list[tuple[memoryview, int]], write: Callable[[list[memoryview], int], None]) -> None:
    writes.sort(key=lambda w: w[1])
    for views, at in runs(writes):
        write(views, at)


class _Token:
    """The write token as a lock: one byte in a pipe, read to take it and written back to give it."""

    def __init__(self, pipe: tuple[int, int]) -> None:
        self._pipe = pipe

    def __enter__(self) -> None:
        os.read(self._pipe[0], 1)

    def __exit__(self, *exc: object) -> None:
        os.write(self._pipe[1], b"t")


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (AgentErrors keep their class and hint), else an AgentError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to pickle
        return AgentError(f"restore worker failed: {type(exc).__name__}: {exc}")


def _die_with(parent: int) -> None:
    """Ask the kernel to kill this worker when its parent dies (Linux), so that a parent killed
    with -9 leaves no worker writing into the target while the restore is resumed."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the closed pipe stops the worker instead
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
