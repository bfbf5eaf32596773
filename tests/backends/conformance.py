"""The one contract every backend passes, against a real server for each.

A backend test module subclasses `Conformance` and provides a `backend` fixture that yields a
fresh, empty backend. Keys are namespaced per test so servers can be shared within a session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backends.base import Backend, ObjectInfo, PutMode
from backends.errors import AlreadyExists, BackendError, InvalidKey, InvalidRange, NotFound, Unsupported


def plant_temp_file(root: Path, key: str, data: bytes, age: float = 0.0) -> Path:
    """What a file-system backend's writer killed while storing `key` leaves: the hidden
    ".tmp-<name>.<random>" beside the final name, written straight into the server's file system,
    owned like the nearest existing directory above it, and `age` seconds old."""
    parts = key.split("/")
    directory = root
    while not directory.exists():
        directory = directory.parent
    owner = directory.stat()
    for part in [*root.relative_to(directory).parts, *parts[:-1]]:
        directory = directory / part
        if not directory.exists():
            directory.mkdir(mode=0o700)
            os.chown(directory, owner.st_uid, owner.st_gid)
    path = directory / f".tmp-{parts[-1]}.{secrets.token_hex(6)}"
    path.write_bytes(data)
    os.chown(path, owner.st_uid, owner.st_gid)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def cut_off_mid_write(be: Backend, directory: Path, name: str, cut) -> list[BaseException]:
    """Put a large object as data/ab/`name` and call `cut` (drop the connection, kill the server)
    once its temporary in `directory` on the server holds a MiB: the errors the put raised."""
    errors: list[BaseException] = []

    def put() -> None:
        try:
            be.put(f"data/ab/{name}", os.urandom(64 << 20))
        except BaseException as exc:
            errors.append(exc)

    def written() -> int:
        sizes = []
        for p in directory.glob(f".tmp-{name}.*"):
            try:
                sizes.append(p.stat().st_size)
            except FileNotFoundError:
                pass
        return max(sizes, default=0)

    thread = threading.Thread(target=put)
    thread.start()
    deadline = time.monotonic() + 60
    while written() < 1 << 20 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    cut()
    thread.join(120)
    return errors


class Conformance:
    #: objects above this size exercise multipart / resumable / session uploads
    large_object_size = 12 << 20

    @pytest.fixture
    def leave_leftover(self):
        """A callable (key, data, age=0.0) that leaves in the backend's storage what a writer killed
        while storing `key` leaves there (a hidden temporary file, an unfinished multipart upload),
        `age` seconds old, by the server's own means; None where a killed write leaves nothing."""
        return None

    def test_put_get_roundtrip(self, backend: Backend):
        backend.put("data/aa/obj1", b"0123456789abcdef")
        assert backend.get("data/aa/obj1") == b"0123456789abcdef"

    def test_empty_object(self, backend: Backend):
        backend.put("empty", b"")
        assert backend.get("empty") == b""
        assert backend.head("empty").size == 0

    def test_ranged_get(self, backend: Backend):
        backend.put("r", b"0123456789abcdef")
        assert backend.get("r", offset=4, length=6) == b"456789"
        assert backend.get("r", offset=10) == b"abcdef"
        assert backend.get("r", offset=0, length=1) == b"0"
        assert backend.get("r", offset=15, length=1) == b"f"

    def test_range_past_end(self, backend: Backend):
        backend.put("r", b"0123")
        with pytest.raises(InvalidRange):
            backend.get("r", offset=2, length=5)
        with pytest.raises(InvalidRange):
            backend.get("r", offset=5)

    def test_get_missing(self, backend: Backend):
        with pytest.raises(NotFound):
            backend.get("nope/missing")
        with pytest.raises(FileNotFoundError):  # NotFound is also a FileNotFoundError
            backend.get("nope/missing", offset=1, length=1)

    def test_head(self, backend: Backend):
        backend.put("h/x", b"abc")
        info = backend.head("h/x")
        assert isinstance(info, ObjectInfo)
        assert (info.key, info.size) == ("h/x", 3)
        with pytest.raises(NotFound):
            backend.head("h/y")

    def test_overwrite(self, backend: Backend):
        backend.put("o", b"first")
        backend.put("o", b"second!", mode=PutMode.OVERWRITE)
        assert backend.get("o") == b"second!"

    def test_create_refuses_existing(self, backend: Backend):
        backend.put("c", b"one", mode=PutMode.CREATE)
        with pytest.raises(AlreadyExists):
            backend.put("c", b"two", mode=PutMode.CREATE)
        assert backend.get("c") == b"one"

    def test_list_prefix(self, backend: Backend):
        for key in ("data/00/a", "data/00/b", "data/01/c", "index/x", "snapshots/y"):
            backend.put(key, key.encode())
        assert sorted(i.key for i in backend.list("data/")) == ["data/00/a", "data/00/b", "data/01/c"]
        assert sorted(i.key for i in backend.list("data/00/")) == ["data/00/a", "data/00/b"]
        assert {i.key: i.size for i in backend.list("index/")} == {"index/x": 7}
        assert sorted(i.key for i in backend.list("")) == sorted(
            ["data/00/a", "data/00/b", "data/01/c", "index/x", "snapshots/y"])
        assert list(backend.list("nothing/")) == []

    def test_list_many_pages(self, backend: Backend):
        keys = [f"many/{i:04d}" for i in range(120)]
        for key in keys:
            backend.put(key, b"x")
        assert sorted(i.key for i in backend.list("many/")) == keys

    def test_delete_idempotent(self, backend: Backend):
        backend.put("d", b"x")
        backend.delete("d")
        with pytest.raises(NotFound):
            backend.get("d")
        backend.delete("d")
        assert [i.key for i in backend.list("d")] == []

    def test_retention_only_where_declared(self, backend: Backend):
        """A caller asking for retention gets it or `Unsupported`, never a silently unlocked object."""
        until = datetime.now(UTC) + timedelta(minutes=5)
        if not backend.capabilities.object_lock:
            with pytest.raises(Unsupported):
                backend.put("locked/x", b"keep me", retain_until=until)
            with pytest.raises(NotFound):  # refused before anything was written
                backend.head("locked/x")
            return
        backend.put("locked/x", b"keep me", retain_until=until)
        assert backend.get("locked/x") == b"keep me"
        assert backend.head("locked/x").size == 7

    def test_invalid_keys(self, backend: Backend):
        for key in ("", "/abs", "a/../b", "UPPER", "a//b", "sp ace", "a/./b", "trailing/"):
            with pytest.raises(InvalidKey):
                backend.put(key, b"x")

    def test_binary_payload_exact(self, backend: Backend):
        payload = bytes(range(256)) * 64 + b"\r\n--boundary\n\x00"
        backend.put("bin", payload)
        assert backend.get("bin") == payload

    def test_payloads_with_line_endings_at_the_edges(self, backend: Backend):
        """Multipart wire formats put a line ending before the delimiter: a body's own trailing
        CR or LF must survive (a sealed object ends in any byte)."""
        for i, payload in enumerate((b"x\r", b"x\n", b"x\r\n", b"\r\nx", b"\n", b"\r", b"x\n\r\n\r")):
            backend.put(f"edges/{i}", payload)
            assert backend.get(f"edges/{i}") == payload, payload

    def test_large_object(self, backend: Backend):
        payload = os.urandom(self.large_object_size + 12345)
        backend.put("big/blob", payload)
        assert backend.head("big/blob").size == len(payload)
        mid = len(payload) // 2 + 3
        assert backend.get("big/blob", offset=mid, length=1000) == payload[mid:mid + 1000]
        assert backend.get("big/blob") == payload

    def test_put_file_stores_the_first_size_bytes_from_the_start(self, backend: Backend):
        """Spooled packs: whatever the file position, exactly `size` bytes from offset 0."""
        payload = os.urandom(3 << 20) + b"tail"
        with tempfile.TemporaryFile() as f:
            f.write(payload + b"not part of the object")
            f.flush()
            backend.put_file("data/ff/spooled", f, len(payload), mode=PutMode.CREATE)
            assert backend.head("data/ff/spooled").size == len(payload)
            assert backend.get("data/ff/spooled") == payload
            assert backend.get("data/ff/spooled", offset=len(payload) - 4) == b"tail"
            with pytest.raises(AlreadyExists):
                backend.put_file("data/ff/spooled", f, 10, mode=PutMode.CREATE)
            backend.put_file("data/ff/spooled", f, 10)  # OVERWRITE
            assert backend.get("data/ff/spooled") == payload[:10]

    def test_put_file_of_a_short_file_stores_nothing(self, backend: Backend):
        with tempfile.TemporaryFile() as f:
            f.write(b"only this")
            f.flush()
            with pytest.raises(Exception):  # noqa: B017 - each backend refuses in its own words
                backend.put_file("short", f, 100, mode=PutMode.CREATE)
        with pytest.raises(NotFound):
            backend.head("short")

    def test_concurrent_puts(self, backend: Backend):
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(5):
                    backend.put(f"conc/{n}-{i}", bytes([n, i]) * 100)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(list(backend.list("conc/"))) == 20
        assert backend.get("conc/3-4") == bytes([3, 4]) * 100

    def test_create_race_one_winner(self, backend: Backend):
        if not backend.capabilities.conditional_put:
            pytest.skip("backend declares no conditional put")
        barrier = threading.Barrier(6)
        wins: list[int] = []
        losses: list[int] = []
        others: list[BaseException] = []

        def race(n: int) -> None:
            barrier.wait()
            try:
                backend.put("race/one", str(n).encode(), mode=PutMode.CREATE)
                wins.append(n)
            except AlreadyExists:
                losses.append(n)
            except BaseException as exc:
                others.append(exc)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert others == []
        assert len(wins) == 1 and len(losses) == 5
        assert backend.get("race/one") == str(wins[0]).encode()

    # -- leftovers of writes that never finished ----------------------------------------------

    def test_writes_that_finish_or_fail_leave_no_leftovers(self, backend: Backend):
        backend.put("data/aa/one", b"x" * 1000)
        backend.put("data/aa/one", b"y", mode=PutMode.OVERWRITE)
        with pytest.raises(AlreadyExists):
            backend.put("data/aa/one", b"z", mode=PutMode.CREATE)
        backend.put("config", b"c", mode=PutMode.CREATE)
        assert backend.list_leftovers(0) == []

    def test_a_killed_write_leaves_a_leftover_that_is_listed_and_removed(self, backend: Backend, leave_leftover):
        if leave_leftover is None:
            pytest.skip("a killed write leaves nothing behind on this backend")
        backend.put("data/ab/kept", b"kept")
        backend.put("config", b"cfg")
        payload = os.urandom(100_000)
        leave_leftover("data/ab/" + "cd" * 32, payload)
        objects = sorted((i.key, i.size) for i in backend.list(""))
        assert objects == [("config", 3), ("data/ab/kept", 4)]  # never listed as an object
        assert backend.list_leftovers(3600) == []  # too young for that cutoff
        [found] = backend.list_leftovers(0)
        assert "cd" * 32 in found.name and found.size == len(payload) and 0 <= found.age < 3600
        backend.remove_leftover(found)
        assert backend.list_leftovers(0) == []
        backend.remove_leftover(found)  # already gone: fine
        assert sorted((i.key, i.size) for i in backend.list("")) == objects
        assert backend.get("data/ab/kept") == b"kept" and backend.get("config") == b"cfg"

    def test_only_leftovers_older_than_the_cutoff_are_listed(self, backend: Backend, leave_leftover):
        if leave_leftover is None:
            pytest.skip("a killed write leaves nothing behind on this backend")
        leave_leftover("data/ab/old", b"old", age=7200)
        leave_leftover("index/new", b"new!")
        [old] = backend.list_leftovers(3600)
        assert "old" in old.name and old.size == 3 and 7200 - 60 <= old.age < 7200 + 600
        assert sorted(f.size for f in backend.list_leftovers(0)) == [3, 4]

    def test_removing_a_leftover_never_touches_an_object(self, backend: Backend, leave_leftover):
        if leave_leftover is None:
            pytest.skip("a killed write leaves nothing behind on this backend")
        leave_leftover("data/ab/x", b"partial")
        backend.put("data/ab/x", b"published")
        [found] = backend.list_leftovers(0)
        for forged in (dataclasses.replace(found, name="data/ab/x", ref="data/ab/x"),
                       dataclasses.replace(found, name="../x", ref="../x")):
            with contextlib.suppress(BackendError):
                backend.remove_leftover(forged)
        assert backend.get("data/ab/x") == b"published"
