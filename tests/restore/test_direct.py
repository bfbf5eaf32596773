"""Restore writes past the page cache (agent.restore.direct): whole blocks of each run with O_DIRECT
once buffered writes turn slow (or always), the ragged ends buffered. The target holds the same
bytes either way, on an image file and on a loop device."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backup.run import run_backup
from agent.restore.direct import ALIGN, MIN_DIRECT, DirectWriter, Pace, aligned_part, split
from agent.restore.options import RestoreOptions
from agent.restore.run import run_restore
from tests.source.cache_helpers import evict, resident_fraction

from .conftest import MiB

SIZE = 24 * MiB


def _target(tmp_path, size: int = SIZE):
    """A sparse file of `size` bytes; the test is skipped where O_DIRECT is refused."""
    path = tmp_path / "target.img"
    with open(path, "wb") as f:
        f.truncate(size)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_DIRECT))
    except OSError:
        pytest.skip(f"{tmp_path} does not support O_DIRECT")
    return path


@st.composite
def _views(draw):
    """A run: its offset, and its bytes cut into 1-5 views at random places."""
    at = draw(st.integers(0, 3 * ALIGN))
    n = draw(st.integers(0, 6 * ALIGN))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    data = bytes(random.Random(at * 7919 + n).getrandbits(8) for _ in range(n))
    edges = [0, *cuts, n]
    return at, [memoryview(data)[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=300, deadline=None)
@given(run=_views(), lo_hi=st.tuples(st.integers(0, 10 * ALIGN), st.integers(0, 10 * ALIGN)))
def test_a_run_cut_at_two_offsets_keeps_its_bytes_in_order(run, lo_hi):
    at, views = run
    lo, hi = sorted(lo_hi)
    head, mid, tail = split(views, at, lo, hi)
    whole = b"".join(views)
    assert b"".join(head + mid + tail) == whole
    assert all(len(v) for v in head + mid + tail)
    end = at + len(whole)
    assert b"".join(head) == whole[:max(0, min(end, lo) - at)]
    assert b"".join(mid) == whole[max(0, lo - at):max(0, min(end, hi) - at)]


@settings(max_examples=300, deadline=None)
@given(at=st.integers(0, 1 << 40), n=st.integers(0, 1 << 24))
def test_the_whole_blocks_of_a_run(at, n):
    lo, hi = aligned_part(at, n)
    assert lo % ALIGN == 0 and hi % ALIGN == 0 and lo <= hi
    if lo < hi:
        assert at <= lo < at + ALIGN and at + n - ALIGN < hi <= at + n
    else:  # no whole block inside
        assert n < 2 * ALIGN


def test_pace_turns_slow_when_a_stretch_of_writes_cost_more_cpu_than_the_rate_allows():
    pace = Pace(sample=1000, slow_rate=1000.0)  # 1000 bytes per CPU second
    pace.observe(600, 0.1)
    pace.observe(600, 0.1)  # 1200 bytes in 0.2 s: 6000 B/s, fast
    assert not pace.slow
    pace.observe(500, 0.4)
    pace.observe(500, 0.7)  # 1000 bytes in 1.1 s: slower than 1000 B/s
    assert pace.slow
    pace.observe(5000, 0.0)  # once slow, it stays so: the page cache does not recover within a restore
    assert pace.slow


def _runs(size: int, seed: int) -> list[tuple[int, bytes]]:
    """Non-overlapping runs of random bytes over [0, size), some adjacent, some with gaps, at
    unaligned offsets, in a shuffled order."""
    rng = random.Random(seed)
    cuts = sorted({0, size, *(rng.randrange(size) for _ in range(40))})
    runs = [(a, rng.randbytes(b - a)) for a, b in zip(cuts, cuts[1:]) if rng.random() < 0.8]
    rng.shuffle(runs)
    return runs


def _write_all(writer: DirectWriter, runs: list[tuple[int, bytes]], seed: int) -> None:
    rng = random.Random(seed)
    for at, data in runs:
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4)))
        edges = [0, *cuts, len(data)]
        writer.write([memoryview(data)[a:b] for a, b in zip(edges, edges[1:])], at)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1 << 32))
def test_direct_writes_put_every_run_in_place(tmp_path, seed):
    """Whole blocks direct, ragged ends and seams buffered: the file holds exactly the runs, zeros
    elsewhere, and the whole blocks of every run of MIN_DIRECT or more went direct."""
    path = _target(tmp_path)
    os.truncate(path, 0)
    os.truncate(path, SIZE)
    runs = _runs(SIZE, seed)
    expected = bytearray(SIZE)
    for at, data in runs:
        expected[at:at + len(data)] = data
    fd = os.open(path, os.O_RDWR)
    try:
        writer = DirectWriter(fd, str(path), "always")
        assert writer.direct
        _write_all(writer, runs, seed)
        writer.close()
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(expected)
    assert writer.direct_bytes == sum(hi - lo for at, data in runs
                                      for lo, hi in [aligned_part(at, len(data))] if hi - lo >= MIN_DIRECT)


def test_direct_writes_leave_the_page_cache_empty(tmp_path):
    path = _target(tmp_path, 16 * MiB)
    evict(path)
    data = os.urandom(16 * MiB)
    fd = os.open(path, os.O_RDWR)
    try:
        writer = DirectWriter(fd, str(path), "always")
        for at in range(0, 16 * MiB, 2 * MiB):
            writer.write([memoryview(data)[at:at + 2 * MiB]], at)
        writer.close()
        assert writer.direct_bytes == 16 * MiB
        assert resident_fraction(path) < 0.05  # buffered, all 16 MiB would be cached (and dirty)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_auto_writes_buffered_until_the_page_cache_turns_slow(tmp_path):
    path = _target(tmp_path)
    data = os.urandom(SIZE)
    for rate, direct in ((1e18, True), (1.0, False)):  # every write slower than 1e18 B/s; none slower than 1 B/s
        fd = os.open(path, os.O_RDWR)
        try:
            writer = DirectWriter(fd, str(path), "auto", Pace(sample=2 * MiB, slow_rate=rate))
            assert not writer.direct
            for at in range(0, SIZE, MiB):
                writer.write([memoryview(data)[at:at + MiB]], at)
            writer.close()
        finally:
            os.close(fd)
        assert path.read_bytes() == data
        # with every write slow, the first 2 MiB went buffered, then the rest direct
        assert writer.direct_bytes == (SIZE - 2 * MiB if direct else 0)


def test_never_writes_buffered(tmp_path):
    path = _target(tmp_path)
    fd = os.open(path, os.O_RDWR)
    try:
        writer = DirectWriter(fd, str(path), "never", Pace(sample=1, slow_rate=1e18))
        writer.write([memoryview(os.urandom(4 * MiB))], 0)
        assert not writer.direct and writer.direct_bytes == 0
        writer.close()
    finally:
        os.close(fd)


def _image(tmp_path) -> bytes:
    """A disk image with data at unaligned places, zeros between them and a hole."""
    rng = random.Random(5)
    img = bytearray(48 * MiB)
    for at, n in ((0, 9 * MiB + 123), (11 * MiB + 7, 5 * MiB), (20 * MiB + 4000, 3 * MiB + 17), (40 * MiB, 8 * MiB)):
        img[at:at + n] = rng.randbytes(n)
    (tmp_path / "disk.img").write_bytes(bytes(img))
    return bytes(img)


def test_a_restore_written_direct_is_byte_identical(repo, tmp_path):
    img = _image(tmp_path)
    run_backup(repo, str(tmp_path / "disk.img"))
    out = _target(tmp_path)
    os.unlink(out)
    res = run_restore(repo, repo.list_snapshots()[0], str(out), RestoreOptions(direct="always"))
    assert out.read_bytes() == img
    assert res.direct_bytes >= 20 * MiB  # the data's whole blocks, all but a run's ragged ends
    res = run_restore(repo, repo.list_snapshots()[0], str(tmp_path / "again.img"), RestoreOptions(direct="never"))
    assert res.direct_bytes == 0 and (tmp_path / "again.img").read_bytes() == img


def test_a_restore_to_a_disk_written_direct_is_byte_identical(repo, tmp_path, loop_device):
    img = _image(tmp_path)
    run_backup(repo, str(tmp_path / "disk.img"))
    dev = loop_device(len(img))
    res = run_restore(repo, repo.list_snapshots()[0], dev, RestoreOptions(direct="always"))
    assert res.direct_bytes >= 20 * MiB
    evict(dev)
    with open(dev, "rb") as f:
        assert f.read(len(img)) == img


class _Counting:
    """A lock that counts how often it is taken, and says whether it is held."""

    def __init__(self) -> None:
        self.taken = 0
        self.held = False

    def __enter__(self) -> None:
        assert not self.held
        self.taken += 1
        self.held = True

    def __exit__(self, *exc: object) -> None:
        self.held = False


def test_the_buffered_lock_guards_buffered_writes_only(tmp_path):
    """Workers in other processes take turns for writes through the page cache (the inode lock),
    while direct writes of whole blocks go side by side (agent.restore.procs)."""
    path = tmp_path / "out.img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        lock = _Counting()
        w = DirectWriter(fd, str(path), "always", buffered_lock=lock)
        if not w.direct:
            pytest.skip("this filesystem refuses O_DIRECT")
        data = os.urandom(4 * MiB)
        w.write([memoryview(data)], ALIGN)  # whole blocks only: nothing buffered
        assert lock.taken == 0 and w.direct_bytes == len(data)
        w.write([memoryview(data)[:-100]], 8 * MiB + 10)  # ragged ends: one buffered write of both
        assert lock.taken == 1
        w.close()
        buffered = DirectWriter(fd, str(path), "never", buffered_lock=lock)
        buffered.write([memoryview(data)], 16 * MiB)
        assert lock.taken == 2 and buffered.direct_bytes == 0
        buffered.close()
        with open(path, "rb") as f:
            f.seek(ALIGN)
            assert f.read(len(data)) == data
            f.seek(8 * MiB + 10)
            assert f.read(len(data) - 100) == data[:-100]
            f.seek(16 * MiB)
            assert f.read(len(data)) == data
    finally:
        os.close(fd)
