"""Swap free space: everything after the header page, which keeps the UUID and label that blkid
and swaplabel read; anything but a version 1 swap signature is read whole."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.allocation import reader_for, swap
from agent.source.allocation.model import ReadWhole
from tests.source.alloc_helpers import (
    MIB,
    answer,
    answer_or_read_whole,
    blank,
    damaged,
    filled_copy,
    have,
    run,
)

pytestmark = pytest.mark.skipif(not have("mkswap", "blkid", "swaplabel"), reason="util-linux not installed")


def mkswap(image: Path, size: int, page: int = 4096, label: str = "scratch", uid: str | None = None) -> Path:
    uid = uid or str(uuid.uuid4())
    run("mkswap", "-p", str(page), "-L", label, "-U", uid, blank(image, size))
    return image


def identity(image: Path) -> tuple[str, str]:
    """What blkid (probing the device itself) and swaplabel say about the area."""
    probe = run("blkid", "-p", "-o", "export", image).stdout.decode()
    return probe.replace(str(image), "IMAGE"), run("swaplabel", image).stdout.decode()


def assert_zeroing_keeps_identity(image: Path, page: int, tmp: Path, label: str, uid: str) -> None:
    got = answer(swap.free_space, image)
    assert got.free == [(page, image.stat().st_size // page * page)]
    want = identity(image)
    assert f"LABEL={label}\n" in want[0] and f"UUID={uid}\n" in want[0] and "TYPE=swap" in want[0]
    for byte in (0x00, 0xAA):
        copy = filled_copy(image, got.free, byte, tmp / f"filled-{byte}.img")
        assert identity(copy) == want
        copy.unlink()


@pytest.mark.parametrize("page", [4096, 65536])
def test_everything_after_the_header_page_is_free(tmp_path, page):
    uid = str(uuid.uuid4())
    image = mkswap(tmp_path / "swap.img", 16 * MIB, page, "scratch", uid)
    assert_zeroing_keeps_identity(image, page, tmp_path, "scratch", uid)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(1 * MIB, 24 * MIB), page=st.sampled_from([4096, 8192, 16384, 65536]),
       label=st.text(st.sampled_from("abcXYZ019_-"), min_size=1, max_size=15), uid=st.uuids())
def test_generated_areas_keep_their_identity(tmp_path_factory, size, page, label, uid):
    tmp = tmp_path_factory.mktemp("swap")
    image = mkswap(tmp / "swap.img", size, page, label, str(uid))
    assert_zeroing_keeps_identity(image, page, tmp, label, str(uid))


@pytest.fixture(scope="module")
def damaged_base(tmp_path_factory) -> bytes:
    return mkswap(tmp_path_factory.mktemp("base") / "swap.img", 4 * MIB, 16384).read_bytes()


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, (64 << 10) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 4 * MIB))
def test_damaged_header_gives_an_answer_or_read_whole(damaged_base, flips, cut):
    answer_or_read_whole(swap.free_space, *damaged(damaged_base, flips, cut))


@pytest.mark.parametrize("offset, value, reason", [
    (4096 - 10, b"SWAP-SPACE", "old swap format"),
    (4096 - 10, b"S1SUSPEND\0", "hibernation image"),
    (4096 - 10, b"LINHIB0001", "hibernation image"),
    (4096 - 10, b"\0" * 10, "no swap signature"),
    (1024, b"\2\0\0\0", "unknown swap version"),
])
def test_other_signatures_are_read_whole(tmp_path, offset, value, reason):
    image = mkswap(tmp_path / "swap.img", 4 * MIB)
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(value)
    with pytest.raises(ReadWhole, match=reason):
        answer(swap.free_space, image)


def test_area_shorter_than_its_partition_keeps_the_rest(tmp_path):
    """Pages past the area's last page are not swap, and are not claimed free."""
    image = mkswap(tmp_path / "swap.img", 4 * MIB)
    with open(image, "r+b") as f:
        f.truncate(6 * MIB)
    assert answer(swap.free_space, image).free == [(4096, 4 * MIB)]


def test_dispatch_by_probed_kind():
    assert reader_for("swap") is swap.free_space
