"""`restore --seed` on XFS and btrfs shares the seed's blocks (reflinks) instead of copying them;
elsewhere the same runs are copied. Real filesystems: XFS and btrfs made by their mkfs on loop
mounts (root; the `fs` fixture, once each), and the ext4 the tests run on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import TargetError
from agent.restore.share import Sharer, can_share

from .conftest import MiB

_MKFS = {"xfs": ["mkfs.xfs", "-q", "-m", "reflink=1"], "btrfs": ["mkfs.btrfs", "-q"]}


@pytest.fixture(params=sorted(_MKFS))
def fs(request, tmp_path):
    """A mounted filesystem that shares blocks, of 512 MiB: XFS (reflinks on, mkfs.xfs's default) or
    btrfs."""
    mkfs = _MKFS[request.param]
    if os.geteuid() != 0 or not shutil.which(mkfs[0]):
        pytest.skip(f"needs root and {mkfs[0]} to mount a {request.param}")
    backing, mnt = tmp_path / "fs.img", tmp_path / request.param
    with open(backing, "wb") as f:
        f.truncate(512 * MiB)
    subprocess.run([*mkfs, str(backing)], check=True, capture_output=True)
    mnt.mkdir()
    if subprocess.run(["mount", "-o", "loop", str(backing), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip(f"this kernel cannot mount {request.param}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _day2(new: Path) -> tuple[str, ...]:
    return "latest", "--source", str(new)


def _shared_blocks(path: Path) -> int:
    """Blocks of `path` in extents the filesystem flags as shared (filefrag's FIEMAP)."""
    out = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True, check=True).stdout
    n = 0
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s+(\d+)\.\.\s*(\d+):", line)  # ext: logical start.. end: ...
        if m and "shared" in line:
            n += int(m[2]) - int(m[1]) + 1
    return n


def test_a_seed_on_xfs_or_btrfs_shares_its_unchanged_blocks(cli, tmp_path, two_days, fs):
    old, new, _ = two_days
    seed = fs / "old.img"
    subprocess.run(["cp", "--sparse=always", str(old), str(seed)], check=True)
    target = fs / "new.img"
    res = cli("restore", "--json", *_day2(new), "--to", str(target), "--seed", str(seed))
    out = res.json()
    assert target.read_bytes() == new.read_bytes()
    # old.img holds 24 MiB of data (0..20 and 28..32 MiB); day2 changed 70 kB at 3 MiB, wiped 9..11 MiB
    # and copied 1 MiB to 14 MiB: the chunks around those moved or changed, the rest is in place
    assert 17 * MiB <= out["shared_bytes"] < 24 * MiB
    # blocks of zeros are holes in the sparse seed: shared as holes, not as extents
    assert 17 * MiB <= _shared_blocks(target) * 4096 <= out["shared_bytes"]
    assert out["seeded"][0]["bytes"] >= out["shared_bytes"]
    text = cli("restore", *_day2(new), "--to", str(fs / "again.img"), "--seed", str(seed)).out
    assert "share the seed's blocks" in text
    assert (fs / "again.img").read_bytes() == new.read_bytes()


def test_a_seed_on_another_filesystem_is_copied(cli, tmp_path, two_days, fs):
    old, new, _ = two_days
    target = fs / "new.img"  # the seed stays on the test's own filesystem
    out = cli("restore", "--json", *_day2(new), "--to", str(target), "--seed", str(old)).json()
    assert target.read_bytes() == new.read_bytes()
    assert out["shared_bytes"] == 0 and out["seeded"][0]["bytes"] >= 17 * MiB
    assert _shared_blocks(target) == 0


def _pair(where: Path, size: int) -> tuple[Path, Path, bytes]:
    seed, target = where / "seed.bin", where / "target.bin"
    data = os.urandom(size)
    seed.write_bytes(data)
    with open(target, "wb") as f:
        f.truncate(size)
    return seed, target, data


def _share(seed: Path, target: Path, ranges: list[tuple[int, int]]) -> Sharer:
    sfd, tfd = os.open(seed, os.O_RDONLY), os.open(target, os.O_RDWR)
    try:
        sharer = Sharer(sfd, str(seed), tfd, str(target), lambda data, at: os.pwrite(tfd, data, at))
        for at, n in ranges:
            sharer.add(at, n)
        sharer.finish()
        return sharer
    finally:
        os.close(sfd)
        os.close(tfd)


_RANGES = st.lists(st.tuples(st.integers(0, 300_000), st.integers(1, 60_000)), max_size=12)


def _expected(data: bytes, ranges: list[tuple[int, int]]) -> bytes:
    want = bytearray(len(data))
    for at, n in ranges:
        want[at:at + n] = data[at:at + n]
    return bytes(want)


@given(_RANGES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_unaligned_runs_hold_the_seed_bytes_and_nothing_else(fs, ranges):
    seed, target, data = _pair(fs, 400_000)
    sharer = _share(seed, target, ranges)
    assert target.read_bytes() == _expected(data, ranges)
    assert sharer.shared_bytes + sharer.copied_bytes == sum(e - s for s, e in sharer.runs())
    assert _shared_blocks(target) * 4096 == sharer.shared_bytes


@given(_RANGES)
@settings(max_examples=25, deadline=None)
def test_where_blocks_cannot_be_shared_the_runs_are_copied(tmp_path_factory, ranges):
    seed, target, data = _pair(tmp_path_factory.mktemp("ext4"), 400_000)
    sharer = _share(seed, target, ranges)
    assert target.read_bytes() == _expected(data, ranges)
    assert sharer.shared_bytes == 0


def test_sharing_needs_one_filesystem_that_can(tmp_path, fs):
    for a, b, want in ((fs / "a", fs / "b", True), (tmp_path / "a", tmp_path / "b", False),
                       (tmp_path / "a", fs / "b", False)):
        a.write_bytes(b"x")
        b.write_bytes(b"y")
        fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
        try:
            assert can_share(fa, fb) is want
        finally:
            os.close(fa)
            os.close(fb)


def test_a_seed_written_during_the_restore_stops_it(fs):
    seed, target, _ = _pair(fs, 1 * MiB)
    sfd, tfd = os.open(seed, os.O_RDWR), os.open(target, os.O_RDWR)
    try:
        sharer = Sharer(sfd, str(seed), tfd, str(target), lambda data, at: os.pwrite(tfd, data, at))
        sharer.add(0, 1 * MiB)
        time.sleep(0.05)  # past the timestamp granularity of kernels without fine-grained ones
        os.pwrite(sfd, b"changed", 4096)  # after the scan checked it, before it is shared
        with pytest.raises(TargetError, match="changed while it was read"):
            sharer.finish()
    finally:
        os.close(sfd)
        os.close(tfd)


def _events(res) -> list[dict]:
    return [json.loads(line) for line in res.out.splitlines() if line.startswith("{")]


def test_a_stamped_seed_is_shared_without_being_read(cli, tmp_path, two_days, fs):
    """An earlier restore carries its stamp: the snapshots' chunk lists say what it holds where, so
    it is not scanned; once written to, it is scanned again."""
    old, new, _ = two_days
    seed = fs / "day1.img"
    cli("restore", "latest", "--source", str(old), "--to", str(seed))
    res = cli("restore", "--json", *_day2(new), "--to", str(fs / "a.img"), "--seed", str(seed))
    assert (fs / "a.img").read_bytes() == new.read_bytes()
    assert not [e for e in _events(res) if e.get("operation", "").startswith("seed ")]  # not scanned
    shared = res.json()["shared_bytes"]
    assert 17 * MiB <= shared < 24 * MiB
    with open(seed, "r+b") as f:  # a write voids the stamp: the seed is read and checked again
        f.seek(5 * MiB)
        f.write(os.urandom(4096))
    res = cli("restore", "--json", *_day2(new), "--to", str(fs / "b.img"), "--seed", str(seed))
    assert (fs / "b.img").read_bytes() == new.read_bytes()
    assert [e for e in _events(res) if e.get("operation", "").startswith("seed ")]
    # read, it can also give chunks whose bytes are in place though day1 had cut them otherwise
    assert res.json()["shared_bytes"] >= 17 * MiB
