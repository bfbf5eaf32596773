"""Restore stamps: an image file says which snapshot a restore left in it, and `--delta` onto an
unchanged one compares the two snapshots instead of reading it (agent.restore.stamp)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.repo.chunklist import DATA, ZERO, Extent
from agent.restore.delta import known, scan
from agent.restore.stamp import XATTR, clear_stamp, read_stamp, write_stamp
from tests.restore.test_delta import _day2, _id

MiB = 1 << 20


def _key(data: memoryview) -> bytes:
    return hashlib.blake2b(data, key=b"test key", digest_size=32).digest()


def _other_key(data: memoryview) -> bytes:
    return hashlib.blake2b(data, key=b"another", digest_size=32).digest()


@pytest.fixture
def stamped(tmp_path) -> Path:
    path = tmp_path / "img"
    path.write_bytes(os.urandom(1 << 16))
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            os.setxattr(fd, "user.probe", b"1")
        except OSError:
            pytest.skip(f"{tmp_path} keeps no user extended attributes")
        if os.fstat(fd).st_mtime_ns % 1_000_000_000 == 0:
            os.utime(fd, ns=(os.fstat(fd).st_atime_ns, os.fstat(fd).st_mtime_ns + 123))
        assert write_stamp(fd, "repo1", "snap1", (0, 1 << 16), _key)
    finally:
        os.close(fd)
    return path


def test_a_stamp_describes_the_file_as_the_restore_left_it(stamped):
    stamp = read_stamp(str(stamped), "repo1", _key)
    assert stamp is not None and stamp.snapshot == "snap1" and stamp.window == (0, 1 << 16)


def test_a_write_since_the_restore_voids_the_stamp(stamped):
    with open(stamped, "r+b") as f:
        f.seek(100)
        f.write(b"x")
    assert read_stamp(str(stamped), "repo1", _key) is None


def test_a_changed_size_voids_the_stamp(stamped):
    st = os.stat(stamped)
    os.truncate(stamped, 1 << 17)
    os.utime(stamped, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old time put back
    assert read_stamp(str(stamped), "repo1", _key) is None


def test_a_stamp_of_another_repository_or_key_or_forged_is_ignored(stamped):
    assert read_stamp(str(stamped), "repo2", _key) is None
    assert read_stamp(str(stamped), "repo1", _other_key) is None
    raw = os.getxattr(stamped, XATTR)
    os.setxattr(stamped, XATTR, raw.replace(b"snap1", b"snap2"))  # setxattr keeps the mtime
    assert read_stamp(str(stamped), "repo1", _key) is None
    for junk in (b"", b"{", b"[]", b'{"stamp": 1, "mac": 2}', b'{"stamp": "{}", "mac": "00"}'):
        os.setxattr(stamped, XATTR, junk)
        assert read_stamp(str(stamped), "repo1", _key) is None


def test_whole_second_times_are_not_trusted(stamped):
    st = os.stat(stamped)
    whole = st.st_mtime_ns - st.st_mtime_ns % 1_000_000_000
    os.utime(stamped, ns=(st.st_atime_ns, whole))
    fd = os.open(stamped, os.O_RDONLY)
    try:
        write_stamp(fd, "repo1", "snap1", (0, 1 << 16), _key)
    finally:
        os.close(fd)
    assert read_stamp(str(stamped), "repo1", _key) is None


def test_clearing_removes_it_and_a_file_without_one_reads_none(stamped, tmp_path):
    fd = os.open(stamped, os.O_RDONLY)
    try:
        clear_stamp(fd)
        clear_stamp(fd)  # twice: nothing to remove is fine
    finally:
        os.close(fd)
    assert read_stamp(str(stamped), "repo1", _key) is None
    assert read_stamp(str(tmp_path / "missing"), "repo1", _key) is None


def _extents(parts: list[tuple[str, int, bytes]]) -> tuple[list[Extent], bytes]:
    """Extents as a chunk list has them (zero runs merged) and the image's bytes."""
    out: list[Extent] = []
    image = bytearray()
    for kind, length, data in parts:
        if kind == "zero":
            if out and out[-1].kind == ZERO:
                out[-1] = Extent(out[-1].offset, out[-1].length + length, ZERO, bytes(32))
            else:
                out.append(Extent(len(image), length, ZERO, bytes(32)))
            image += bytes(length)
        else:
            out.append(Extent(len(image), len(data), DATA, _key(memoryview(data))))
            image += data
    return out, bytes(image)


_SIZE = 96 * 1024


def _image(rnd: random.Random, pool: list[bytes], zero_share: float, size: int) -> list[tuple[str, int, bytes]]:
    parts: list[tuple[str, int, bytes]] = []
    total = 0
    while total < size:
        if rnd.random() < zero_share:
            n = min(rnd.randrange(1, 9000), size - total)
            parts.append(("zero", n, b""))
        else:
            data = rnd.choice(pool)[:size - total]
            parts.append(("data", len(data), data))
        total += parts[-1][1]
    return parts


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), zero_share=st.floats(0, 0.6), shared=st.floats(0, 1), window=st.booleans())
def test_known_finds_what_reading_the_target_finds(tmp_path_factory, seed, zero_share, shared, window):
    """The plan from the stamp's snapshot is what `scan` finds by reading a target holding it, and
    every chunk it says is right, or held elsewhere, is right there."""
    rnd = random.Random(seed)
    pool = [rnd.randbytes(rnd.randrange(1, 6000)) + b"\x01" for _ in range(24)]
    old_parts = _image(rnd, pool, zero_share, _SIZE)
    new_parts = [p if rnd.random() < shared else q for p, q in zip(old_parts, _image(rnd, pool, zero_share, _SIZE))]
    old_ext, old_bytes = _extents(old_parts)
    new_ext, new_bytes = _extents(new_parts)
    new_bytes = new_bytes[:_SIZE]
    win = (rnd.randrange(0, _SIZE // 2), _SIZE // 3) if window else (0, min(len(new_bytes), _SIZE))
    start, size = win
    target = tmp_path_factory.mktemp("t") / "target.img"
    target.write_bytes(old_bytes[start:start + size])  # a restore of that window of the old image
    fd = os.open(target, os.O_RDONLY)
    try:
        read = scan(fd, str(target), size, new_ext, win, _key, zeros=True)
    finally:
        os.close(fd)
    found, moved = known(old_ext, new_ext, win)
    held = old_bytes[start:start + size]
    for at in found.matched:
        e = next(e for e in new_ext if e.offset == at + start)
        assert _key(memoryview(held[at:at + e.length])) == e.id
    for cid, at in {**found.sources, **moved}.items():
        length = next(e.length for e in old_ext if e.id == cid)
        assert _key(memoryview(held[at:at + length])) == cid
    assert found.matched <= read.matched and found.matched_bytes <= read.matched_bytes
    zero_read = {(a, n) for a, n in read.not_zero}
    assert zero_read <= set(found.not_zero)
    for at, n in set(found.not_zero) - zero_read:  # flagged but zeros after all: only by chance
        assert held[at:at + n] == bytes(n)
    if found.matched != read.matched:  # same bytes from other chunks: only by chance
        for at in read.matched - found.matched:
            assert not any(e.offset == at + start and e.kind == DATA for e in old_ext)


def test_delta_onto_a_stamped_restore_compares_snapshots_without_reading(cli, tmp_path, two_days):
    old, new, stored = two_days
    target = tmp_path / "restored.img"
    first = _id(cli, "day1")
    cli("restore", first, "--to", str(target))
    try:
        os.getxattr(target, XATTR)
    except OSError:
        pytest.skip("no user extended attributes here")
    res = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta")
    out = res.json()
    assert target.read_bytes() == new.read_bytes()
    assert out["held_snapshot"] == first
    assert out["fetched_bytes"] <= 1.1 * stored + 64 * 1024
    assert '"operation": "compare"' not in res.out  # the target was not read through
    assert os.getxattr(target, XATTR)  # stamped again: now it holds day2

    again = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta").json()
    assert again["held_snapshot"] == _id(cli, "day2") and again["written_bytes"] == 0


def test_a_stamped_target_changed_since_is_read_and_fixed(cli, tmp_path, two_days):
    old, new, _ = two_days
    target = tmp_path / "restored.img"
    cli("restore", _id(cli, "day1"), "--to", str(target))
    with open(target, "r+b") as f:  # a write the stamp sees: the modification time moves
        f.seek(5 * MiB)
        f.write(b"\xff" * 4096)
    out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta").json()
    assert out["held_snapshot"] is None
    assert target.read_bytes() == new.read_bytes()


def test_compare_all_reads_a_stamped_target_anyway(cli, tmp_path, two_days):
    """A change that hides from the stamp (the old modification time put back) stays with the stamp
    trusted, and --compare-all finds and fixes it."""
    old, new, _ = two_days
    target = tmp_path / "restored.img"
    cli("restore", _id(cli, "day1"), "--to", str(target))
    st = os.stat(target)
    with open(target, "r+b") as f:
        f.seek(5 * MiB)  # unchanged between day1 and day2
        f.write(b"\xff" * 4096)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    trusted = tmp_path / "trusted.img"
    shutil.copy2(target, trusted)  # with its attributes and times, like cp -a: the stamp holds there too
    out = cli("restore", "--json", *_day2(tmp_path), "--to", str(trusted), "--delta").json()
    assert out["held_snapshot"] == _id(cli, "day1")
    data = trusted.read_bytes()
    assert data[5 * MiB:5 * MiB + 4096] == b"\xff" * 4096  # trusted, not read
    assert data[:5 * MiB] == new.read_bytes()[:5 * MiB]
    out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta", "--compare-all").json()
    assert out["held_snapshot"] is None
    assert target.read_bytes() == new.read_bytes()
    res = cli("restore", *_day2(tmp_path), "--to", str(tmp_path / "x.img"), "--compare-all", check=False)
    assert res.code == 2 and "--compare-all applies to --delta only" in res.err


def test_a_stamp_of_a_forgotten_snapshot_means_reading_the_target(cli, tmp_path, two_days):
    old, new, _ = two_days
    target = tmp_path / "restored.img"
    cli("restore", _id(cli, "day1"), "--to", str(target))
    cli("forget", "--keep-last", "1", "--group-by", "host")  # day1 goes, day2 (newer) stays
    assert len(cli("snapshots", "--json").json()["snapshots"]) == 1
    out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta").json()
    assert out["held_snapshot"] is None
    assert target.read_bytes() == new.read_bytes()


def test_a_stamp_still_describes_only_the_file_it_was_read_from_unchanged(stamped, tmp_path):
    stamp = read_stamp(str(stamped), "repo1", _key)
    assert stamp is not None
    fd = os.open(stamped, os.O_RDWR)
    try:
        assert stamp.still_describes(fd)
        os.pwrite(fd, b"y", 10)  # between reading the stamp and the restore's first write
        assert not stamp.still_describes(fd)
    finally:
        os.close(fd)
    other = tmp_path / "other"
    other.write_bytes(stamped.read_bytes())
    st = os.stat(stamped)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    fd = os.open(other, os.O_RDONLY)
    try:
        assert not stamp.still_describes(fd)  # same size and time, another file
    finally:
        os.close(fd)
