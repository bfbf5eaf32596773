"""FAT12/16/32 free space: fsck.fat's free-cluster count, bytes that can be zeroed without fsck.fat
or mtools noticing, and ReadWhole for volumes that were not unmounted cleanly or are damaged."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.allocation import fat, reader_for
from agent.source.allocation.model import ReadWhole
from tests.source.alloc_helpers import (
    MIB,
    answer,
    answer_or_read_whole,
    blank,
    damaged,
    filled_copy,
    have,
    random_files,
    run,
)

pytestmark = pytest.mark.skipif(not have("mkfs.vfat", "fsck.fat", "mcopy", "mdel", "mmd"),
                                reason="dosfstools or mtools not installed")

BITS = [12, 16, 32]


def mkfs(image: Path, bits: int, size: int = 48 * MIB) -> Path:
    run("mkfs.vfat", "-F", str(bits), blank(image, size))
    return image


def put(image: Path, files: dict[str, bytes], tmp: Path) -> None:
    """Copy files in with mtools, making their directories first."""
    for name, data in files.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            run("mmd", "-D", "s", "-i", image, "::" + "/".join(parts[:depth]), check=False)
        src = tmp / "in.bin"
        src.write_bytes(data)
        run("mcopy", "-i", image, src, "::" + name)


def fsck_free_clusters(image: Path) -> tuple[int, int]:
    """(free clusters, bytes per cluster) as fsck.fat -n -v counts them; it must find nothing wrong."""
    check = run("fsck.fat", "-n", "-v", image, check=False)
    out = check.stdout.decode()
    assert check.returncode == 0, out + check.stderr.decode()
    used, total = map(int, re.search(r"(\d+)/(\d+) clusters", out).groups())
    return total - used, int(re.search(r"(\d+) bytes per cluster", out).group(1))


def assert_zeroing_keeps(image: Path, free: list[tuple[int, int]], files: dict[str, bytes], tmp: Path) -> None:
    """Overwriting every free byte with zeros, then junk, leaves fsck.fat clean and every file intact."""
    for byte in (0x00, 0xAA):
        copy = filled_copy(image, free, byte, tmp / f"filled-{byte}.img")
        fsck_free_clusters(copy)
        for name, data in files.items():
            out = tmp / "out.bin"
            run("mcopy", "-n", "-i", copy, "::" + name, out)
            assert out.read_bytes() == data, name
        copy.unlink()


@pytest.mark.parametrize("bits", BITS)
def test_free_clusters_match_fsck_fat(tmp_path, bits):
    image = mkfs(tmp_path / "fs.img", bits)
    put(image, random_files(3, 3 * MIB, seed=1) | {"d/e/small.txt": b"hello"}, tmp_path)
    run("mdel", "-i", image, "::f1.bin")
    got = answer(fat.free_space, image)
    free, cluster = fsck_free_clusters(image)
    assert got.free_bytes == free * cluster
    assert got.method == f"FAT{bits} allocation table"
    if bits == 32:  # mtools keeps FSInfo's count up to date
        data = image.read_bytes()
        assert struct.unpack_from("<I", data, 512 + 488)[0] == free


@pytest.mark.parametrize("bits", BITS)
def test_zeroing_free_space_keeps_every_file(tmp_path, bits):
    files = random_files(4, 8 * MIB, seed=2)
    image = mkfs(tmp_path / "fs.img", bits)
    put(image, files, tmp_path)
    before = answer(fat.free_space, image)
    run("mdel", "-i", image, "::f1.bin", "::f3.bin")
    after = answer(fat.free_space, image)
    assert after.free_bytes - before.free_bytes >= 0.9 * 16 * MIB
    boot = image.read_bytes()[:512]
    lay = fat.layout(boot)
    assert lay is not None and lay.bits == bits
    assert after.free[0][0] >= lay.data_start  # boot sector, FATs and the root directory stay
    assert_zeroing_keeps(image, after.free, {k: files[k] for k in ("f0.bin", "f2.bin")}, tmp_path)


trees = st.dictionaries(
    st.sampled_from(["A.BIN", "b.txt", "dir/c.bin", "dir/sub/long file name.dat", "G.BIN"]),
    st.tuples(st.integers(0, 3 * MIB), st.integers(0, 1 << 30)),
    min_size=1, max_size=5,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees, bits=st.sampled_from(BITS))
def test_generated_trees_survive_zeroing(tmp_path_factory, tree, bits):
    tmp = tmp_path_factory.mktemp("tree")
    files = {name: st_bytes(size, seed) for name, (size, seed) in tree.items()}
    image = mkfs(tmp / "fs.img", bits)
    put(image, files, tmp)
    if len(files) > 1:
        doomed = sorted(files)[0]
        run("mdel", "-i", image, "::" + doomed)
        del files[doomed]
    got = answer(fat.free_space, image)
    free, cluster = fsck_free_clusters(image)
    assert got.free_bytes == free * cluster
    assert_zeroing_keeps(image, got.free, files, tmp)


def st_bytes(size: int, seed: int) -> bytes:
    return random_files(1, size, seed)["f0.bin"] if seed % 2 else bytes([seed % 251]) * size


@pytest.fixture(scope="module")
def damaged_bases(tmp_path_factory) -> list[bytes]:
    tmp = tmp_path_factory.mktemp("bases")
    out = []
    for bits in BITS:
        image = mkfs(tmp / f"fat{bits}.img", bits, size=40 * MIB)
        put(image, random_files(3, MIB, seed=4) | {"d/x.txt": b"x" * 5000}, tmp)
        out.append(image.read_bytes())
    return out


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 2), flips=st.lists(st.tuples(st.integers(0, (256 << 10) - 1), st.integers(0, 255)),
                                              min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 40 * MIB))
def test_damaged_metadata_gives_an_answer_or_read_whole(damaged_bases, which, flips, cut):
    answer_or_read_whole(fat.free_space, *damaged(damaged_bases[which], flips, cut))


@settings(max_examples=200, deadline=None)
@given(fat_bytes=st.binary(max_size=600), bits=st.sampled_from(BITS), clusters=st.integers(1, 400))
def test_used_flags_agree_with_a_plain_decoder(fat_bytes, bits, clusters):
    """The whole-byte decoder against a loop over entries, on any FAT contents."""
    need = (clusters + 2) * bits // 8 + 1
    table = fat_bytes.ljust(need, b"\1")
    want = []
    for n in range(clusters + 2):
        if bits == 12:
            v = int.from_bytes(table[n * 3 // 2:n * 3 // 2 + 2], "little")
            v = v >> 4 if n & 1 else v & 0xFFF
        else:
            v = int.from_bytes(table[n * bits // 8:(n + 1) * bits // 8], "little") & 0x0FFFFFFF
        want.append(v == 0)
    assert [b == 0 for b in fat.used_flags(table, bits, clusters)] == want


def _patch(image: Path, offset: int, fmt: str, value: int) -> None:
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def _fat1(image: Path) -> tuple[int, str, int]:
    """Where FAT[1] is (first FAT), its format, and the clean-shutdown bit."""
    lay = fat.layout(image.read_bytes()[:512])
    assert lay is not None
    where = lay.reserved * lay.sector
    return (where + 4, "<I", 0x08000000) if lay.bits == 32 else (where + 2, "<H", 0x8000)


@pytest.mark.parametrize("bits", [16, 32])
def test_unclean_volume_is_read_whole(tmp_path, bits):
    image = mkfs(tmp_path / "fs.img", bits)
    put(image, {"a.bin": b"a" * 100000}, tmp_path)
    answer(fat.free_space, image)  # clean as mkfs.vfat and mtools leave it
    offset, fmt, clean = _fat1(image)
    data = image.read_bytes()
    _patch(image, offset, fmt, struct.unpack_from(fmt, data, offset)[0] & ~clean)
    with pytest.raises(ReadWhole, match="not unmounted cleanly"):  # Windows' FAT[1] bit
        answer(fat.free_space, image)
    image = mkfs(tmp_path / "linux.img", bits)
    _patch(image, 65 if bits == 32 else 37, "<B", 1)  # the boot sector's state, set by Linux while mounted
    with pytest.raises(ReadWhole, match="not unmounted cleanly"):
        answer(fat.free_space, image)


def test_fsinfo_claiming_fewer_free_clusters_is_read_whole(tmp_path):
    image = mkfs(tmp_path / "fs.img", 32)
    _patch(image, 512 + 488, "<I", 10)
    with pytest.raises(ReadWhole, match="FSInfo"):
        answer(fat.free_space, image)
    _patch(image, 512 + 488, "<I", 0xFFFFFFFF)  # "unknown" is not a disagreement
    answer(fat.free_space, image)


def test_media_byte_mismatch_is_read_whole(tmp_path):
    image = mkfs(tmp_path / "fs.img", 16)
    _patch(image, _fat1(image)[0] - 2, "<B", 0xF0)
    with pytest.raises(ReadWhole, match="media byte"):
        answer(fat.free_space, image)


@pytest.mark.parametrize("bits", BITS)
def test_a_cluster_used_in_either_fat_copy_is_used(tmp_path, bits):
    """The copies should agree; where they do not, the conservative answer is the union of both."""
    image = mkfs(tmp_path / "fs.img", bits)
    lay = fat.layout(image.read_bytes()[:512])
    assert lay is not None and lay.fats == 2
    before = answer(fat.free_space, image)
    second = (lay.reserved + lay.fat_size) * lay.sector
    cluster = 100  # an entry 0 in the first FAT, marked end-of-chain in the second
    if bits == 12:
        _patch(image, second + 150, "<H", 0xFFF)
    else:
        _patch(image, second + cluster * bits // 8, "<I" if bits == 32 else "<H", (1 << bits) - 1 >> (bits == 32) * 4)
    after = answer(fat.free_space, image)
    start = lay.data_start + (cluster - 2) * lay.cluster_bytes
    assert before.free_bytes - after.free_bytes == lay.cluster_bytes
    assert not any(s <= start < e for s, e in after.free)


def test_dispatch_by_probed_kind():
    assert reader_for("vfat") is fat.free_space
