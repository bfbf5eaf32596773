"""Repository locks: sealed lock records under locks/.

Backups take shared locks; check, prune and key removal take exclusive ones. A lock that was not
refreshed for STALE_AFTER, or whose process is gone on this very host, is stale and ignored.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.config.stamps import rfc3339
from agent.errors import CorruptObject, RepositoryLocked, RepositoryNotFound
from agent.repo import layout
from agent.repo.envelope import Envelope
from agent.repo.storage import storage_error
from backends.base import Backend, PutMode
from backends.errors import BackendError, NotFound

STALE_AFTER = timedelta(minutes=30)
REFRESH_EVERY = 300.0
_KIND = b"lock"


@dataclass(frozen=True)
class LockInfo:
    id: str
    host: str
    pid: int
    time: datetime
    exclusive: bool
    command: str

    def is_stale(self, now: datetime) -> bool:
        if now - self.time > STALE_AFTER:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False


class Lock:
    """A held lock; refreshed by a background thread until released."""

    def __init__(self, backend: Backend, envelope: Envelope, exclusive: bool, command: str) -> None:
        self._backend, self._env = backend, envelope
        self.exclusive, self.command = exclusive, command
        self.id = secrets.token_hex(16)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshed = 0.0
        self.lost = False  # our record vanished (`unlock --remove-all` elsewhere, an emptied bucket)

    def _write(self) -> None:
        doc = {"host": socket.gethostname(), "pid": os.getpid(), "exclusive": self.exclusive,
               "command": self.command, "time": datetime.now(UTC).isoformat()}
        self._backend.put(layout.lock(self.id), self._env.seal_object(_KIND, json.dumps(doc).encode()),
                          mode=PutMode.OVERWRITE)

    def acquire(self, wait: float = 0.0) -> Lock:
        """Take the lock, waiting up to `wait` seconds for conflicting locks to go away.

        Write our record first, then list: of two racing processes the later lister always sees
        the other's record, so two conflicting holders can never both proceed.
        """
        deadline = time.monotonic() + wait
        while True:
            self._write()
            conflict = self._conflict()
            if conflict is None:
                break
            self._backend.delete(layout.lock(self.id))
            if time.monotonic() >= deadline:
                kind = "an exclusive" if conflict.exclusive else "a"
                raise RepositoryLocked(
                    f"the repository is locked: {kind} lock held by {conflict.command!r} (pid {conflict.pid} on "
                    f"{conflict.host}, since {rfc3339(conflict.time)})")
            time.sleep(min(max(0.0, deadline - time.monotonic()), random.uniform(0.2, 2.0)))
        self.refreshed = time.monotonic()
        self._thread = threading.Thread(target=self._refresh, name="lock-refresh", daemon=True)
        self._thread.start()
        return self

    def _conflict(self) -> LockInfo | None:
        now = datetime.now(UTC)
        for other in list_locks(self._backend, self._env, skip=self.id):
            if other.is_stale(now):
                continue
            if self.exclusive or other.exclusive:
                return other
        return None

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                self._backend.head(layout.lock(self.id))
            except NotFound:  # removed under us: writing it again would hide that a prune may have run
                self.lost = True
                return
            except BackendError:
                continue  # next refresh retries; the lock only goes stale after STALE_AFTER
            try:
                self._write()
                self.refreshed = time.monotonic()
            except BackendError:
                pass

    def ensure_valid(self) -> None:
        """Raise unless our lock held all along and the repository is still there: if the lock may
        have looked stale to others (the machine slept), was removed, or the repository's config is
        gone (an emptied bucket), a prune could have deleted what this run relies on, so the caller
        must not publish anything. Checked now, not only at the last refresh."""
        if time.monotonic() - self.refreshed > STALE_AFTER.total_seconds() - 60:
            raise RepositoryLocked("this run's lock was not refreshed in time (suspended or cut off from the "
                                   "storage); stopping without writing a snapshot. Run the backup again.")
        # both questions at once: over a long round trip, one after the other doubled the wait
        with ThreadPoolExecutor(2, thread_name_prefix="lock-check") as pool:
            config, mine = pool.submit(self._confirm, layout.CONFIG), pool.submit(self._confirm, layout.lock(self.id))
        try:
            config.result()
        except NotFound:
            raise RepositoryNotFound(f"the repository at {self._backend.location} disappeared while this run "
                                     "worked (its config is gone); no snapshot was written",
                                     hint="check the storage: was the bucket or directory emptied or moved?") from None
        try:
            mine.result()
        except NotFound:
            self.lost = True
        if self.lost:
            raise RepositoryLocked("this run's lock was removed while it ran (`agent unlock --remove-all` or a "
                                   "cleanup elsewhere); a prune may have deleted data it uploaded, so no snapshot "
                                   "was written. Run the backup again.",
                                   hint="only remove locks of runs that are really gone (`agent unlock` without "
                                        "--remove-all removes only stale ones)")

    def _confirm(self, key: str) -> None:
        """head(key): NotFound passes through, other storage failures become agent errors."""
        try:
            self._backend.head(key)
        except NotFound:
            raise
        except BackendError as exc:
            raise storage_error(exc, "cannot confirm that this run's lock and the repository are still there") from None

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            self._backend.delete(layout.lock(self.id))
        except BackendError:
            pass

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def list_locks(backend: Backend, env: Envelope, unreadable: list[str] | None = None,
               skip: str = "") -> list[LockInfo]:
    """Every readable lock record but `skip` (the caller's own: not fetched, a round trip saved);
    the ids of unreadable ones (damaged, e.g. zero-filled by a NAS that lost power) go to
    `unreadable`: they block no one, and `remove_stale` deletes them."""
    out = []
    for info in backend.list(layout.LOCKS):
        lock_id = layout.name_of(info.key)
        if lock_id == skip:
            continue
        try:
            raw = env.open_object(_KIND, backend.get(info.key), f"lock {lock_id[:8]}")
            d = json.loads(raw)
            when, pid = datetime.fromisoformat(d["time"]), int(d["pid"])
            if when.utcoffset() is None or not 0 < pid < 1 << 31:  # is_stale compares it to now, signals it
                raise ValueError("malformed lock record")
            out.append(LockInfo(lock_id, str(d["host"]), pid, when.astimezone(UTC), bool(d["exclusive"]),
                                str(d.get("command", ""))))
        except NotFound:
            continue  # released while we listed
        except (CorruptObject, ValueError, KeyError, TypeError, OverflowError, RecursionError):
            if unreadable is not None:
                unreadable.append(lock_id)
    return out


def remove_stale(backend: Backend, env: Envelope, *, all_locks: bool = False) -> int:
    now = datetime.now(UTC)
    unreadable: list[str] = []
    stale = [lk.id for lk in list_locks(backend, env, unreadable) if all_locks or lk.is_stale(now)]
    n = 0
    for lock_id in stale + unreadable:
        try:
            backend.delete(layout.lock(lock_id))
        except NotFound:
            continue  # released meanwhile
        n += 1
    return n
