"""ext2/3/4 free space: the ranges dumpe2fs prints, bytes that can be zeroed without e2fsck or any
file noticing, and ReadWhole for damaged, dirty or unsupported filesystems."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.allocation import ext, reader_for
from agent.source.allocation.model import ReadWhole
from tests.source.alloc_helpers import (
    MIB,
    answer,
    answer_or_read_whole,
    blank,
    damaged,
    filled_copy,
    have,
    loop_device,
    mounted,
    random_files,
    run,
)

pytestmark = pytest.mark.skipif(not have("mke2fs", "dumpe2fs", "debugfs", "e2fsck"), reason="e2fsprogs not installed")

# -b 4096 -g 2048 gives 64 MiB eight groups, so BLOCK_UNINIT groups and backups appear; mke2fs's
# own defaults for a disk this small are 1 KiB blocks and 8 MiB groups
VARIANTS = {
    "ext2": ["-t", "ext2", "-b", "4096", "-g", "2048"],
    "ext3": ["-t", "ext3", "-b", "4096", "-g", "2048"],
    "ext4": ["-t", "ext4", "-b", "4096", "-g", "2048"],
    "ext4-defaults": ["-t", "ext4"],
    "ext4-no-flex_bg": ["-t", "ext4", "-O", "^flex_bg", "-b", "4096", "-g", "2048"],
    "ext4-64bit-1k": ["-t", "ext4", "-O", "64bit", "-b", "1024"],
    "ext4-meta_bg": ["-t", "ext4", "-O", "meta_bg,^resize_inode", "-b", "1024"],
    "ext4-uninit_bg": ["-t", "ext4", "-O", "^metadata_csum,uninit_bg", "-b", "4096", "-g", "2048"],
    "ext4-sparse_super2": ["-t", "ext4", "-O", "sparse_super2", "-b", "4096", "-g", "2048"],
}


def mkfs(image: Path, variant: str, files: dict[str, bytes] | None = None, size: int = 64 * MIB) -> Path:
    blank(image, size)
    args = ["mke2fs", "-q", "-F", *VARIANTS[variant]]
    if files is not None:
        src = image.with_suffix(".src")
        src.mkdir()
        for name, data in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        args += ["-d", str(src)]
    run(*args, image)
    return image


def dumpe2fs_free(image: Path) -> list[tuple[int, int]]:
    """The "Free blocks:" ranges of every group, in bytes, merged across groups."""
    out = run("dumpe2fs", image).stdout.decode()
    bs = int(re.search(r"Block size:\s+(\d+)", out).group(1))
    merged: list[tuple[int, int]] = []
    for line in re.findall(r"^\s+Free blocks: (.*)$", out, re.M):
        for part in filter(None, (p.strip() for p in line.split(","))):
            lo, _, hi = part.partition("-")
            start, end = int(lo) * bs, (int(hi or lo) + 1) * bs
            if merged and merged[-1][1] == start:
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
    return merged


def debugfs(image: Path, *commands: str, write: bool = False) -> None:
    script = image.with_suffix(".cmds")
    script.write_text("\n".join(commands) + "\n")
    run("debugfs", *(["-w"] if write else []), "-f", script, image)


def assert_zeroing_keeps(image: Path, free: list[tuple[int, int]], files: dict[str, bytes], tmp: Path) -> None:
    """Overwriting every free byte with zeros, then junk, leaves e2fsck clean and every file intact."""
    for byte in (0x00, 0xAA):
        copy = filled_copy(image, free, byte, tmp / f"filled-{byte}.img")
        check = run("e2fsck", "-fn", copy, check=False)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        for name, data in files.items():
            out = tmp / "out.bin"
            debugfs(copy, f"dump /{name} {out}")
            assert out.read_bytes() == data, name
        copy.unlink()


@pytest.mark.parametrize("variant", VARIANTS)
def test_free_ranges_match_dumpe2fs(tmp_path, variant):
    image = mkfs(tmp_path / "fs.img", variant, random_files(3, 3 * MIB, seed=1))
    debugfs(image, "rm /f1.bin", write=True)
    got = answer(ext.free_space, image)
    assert got.free == dumpe2fs_free(image)
    assert got.free_bytes > 40 * MIB


def test_uninitialised_groups_count_as_free_except_their_metadata(tmp_path):
    """A fresh ext4 leaves most groups BLOCK_UNINIT, with no bitmap on disk: they must still be
    reported free, bar the superblock backups and descriptor copies that dumpe2fs places there."""
    image = mkfs(tmp_path / "fs.img", "ext4-no-flex_bg")
    out = run("dumpe2fs", image).stdout.decode()
    assert out.count("BLOCK_UNINIT") >= 5
    got = answer(ext.free_space, image)
    assert got.free == dumpe2fs_free(image)
    summary = run("dumpe2fs", "-h", image).stdout.decode()
    free_blocks = int(re.search(r"Free blocks:\s+(\d+)", summary).group(1))
    assert got.free_bytes == free_blocks * 4096 > 50 * MIB


@pytest.mark.parametrize("variant", ["ext2", "ext4", "ext4-64bit-1k"])
def test_zeroing_free_space_keeps_every_file(tmp_path, variant):
    files = random_files(4, 8 * MIB, seed=2)
    image = mkfs(tmp_path / "fs.img", variant, files)
    before = answer(ext.free_space, image)
    debugfs(image, "rm /f1.bin", "rm /f3.bin", write=True)
    after = answer(ext.free_space, image)
    assert after.free_bytes - before.free_bytes >= 0.9 * 16 * MIB
    assert after.free == dumpe2fs_free(image)
    kept = {k: v for k, v in files.items() if k in ("f0.bin", "f2.bin")}
    assert_zeroing_keeps(image, after.free, kept, tmp_path)


@pytest.mark.skipif(os.geteuid() != 0 or not have("losetup"), reason="a loop mount needs root")
def test_written_by_the_kernel(tmp_path):
    """Files written and deleted through the kernel's ext4 (delayed allocation, extents, the
    journal checkpointed at unmount); a copy taken while mounted needs journal recovery."""
    image = mkfs(tmp_path / "fs.img", "ext4")
    files = random_files(4, 8 * MIB, seed=3)
    with loop_device(image) as dev, mounted(["mount", "-t", "ext4", dev], tmp_path / "mnt") as mnt:
        for name, data in files.items():
            (mnt / name).write_bytes(data)
        os.sync()
        (mnt / "f1.bin").unlink()
        (mnt / "f3.bin").unlink()
        os.sync()
        dirty = filled_copy(image, [], 0, tmp_path / "dirty.img")
    with pytest.raises(ReadWhole, match="journal needs recovery"):
        answer(ext.free_space, dirty)
    got = answer(ext.free_space, image)
    assert got.free == dumpe2fs_free(image)
    assert got.free_bytes > 16 * MIB + 0.9 * 16 * MIB
    assert_zeroing_keeps(image, got.free, {"f0.bin": files["f0.bin"], "f2.bin": files["f2.bin"]}, tmp_path)


trees = st.dictionaries(
    st.sampled_from(["a.bin", "b.txt", "d/c.bin", "d/e/f.dat", "g.bin"]),
    st.tuples(st.integers(0, 3 * MIB), st.integers(0, 1 << 30)),
    min_size=1, max_size=5,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees, variant=st.sampled_from(["ext2", "ext4", "ext4-64bit-1k"]))
def test_generated_trees_survive_zeroing(tmp_path_factory, tree, variant):
    tmp = tmp_path_factory.mktemp("tree")
    files = {name: os.urandom(size) if seed % 2 else bytes([seed % 251]) * size
             for name, (size, seed) in tree.items()}
    image = mkfs(tmp / "fs.img", variant, files, size=32 * MIB)
    doomed = sorted(files)[0]
    if len(files) > 1:
        debugfs(image, f"rm /{doomed}", write=True)
        del files[doomed]
    got = answer(ext.free_space, image)
    assert got.free == dumpe2fs_free(image)
    assert_zeroing_keeps(image, got.free, files, tmp)


@pytest.fixture(scope="module")
def damaged_bases(tmp_path_factory) -> list[bytes]:
    tmp = tmp_path_factory.mktemp("bases")
    out = []
    for variant in ("ext2", "ext4-64bit-1k", "ext4-uninit_bg"):
        image = mkfs(tmp / f"{variant}.img", variant, random_files(3, MIB, seed=4), size=16 * MIB)
        out.append(image.read_bytes())
    return out


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 2), flips=st.lists(st.tuples(st.integers(0, (256 << 10) - 1), st.integers(0, 255)),
                                              min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 16 * MIB))
def test_damaged_metadata_gives_an_answer_or_read_whole(damaged_bases, which, flips, cut):
    answer_or_read_whole(ext.free_space, *damaged(damaged_bases[which], flips, cut))


def _patched(image: Path, offset: int, fmt: str, value: int) -> Path:
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))
    return image


@pytest.mark.parametrize("setup, reason", [
    (lambda img: debugfs(img, "feature needs_recovery", write=True), "journal needs recovery"),
    (lambda img: debugfs(img, "ssv state 3", write=True), "filesystem has errors"),
    (lambda img: debugfs(img, "ssv state 0", write=True), "not unmounted cleanly"),
    (lambda img: debugfs(img, "feature compression", write=True), "unsupported feature compression"),
    (lambda img: debugfs(img, "set_bg 1 free_blocks_count 7", "set_bg 1 checksum calc", write=True),
     "free block count of group 1"),
    # a group with data marked as never initialised: its checksum recomputed, only the count shows it
    (lambda img: debugfs(img, "set_bg 0 flags 2", "set_bg 0 checksum calc", write=True), "group 0"),
    (lambda img: debugfs(img, "set_bg 2 flags 0", write=True), "descriptor checksum mismatch in group 2"),
    (lambda img: debugfs(img, "ssv free_blocks_count 100", write=True), "disagrees with the superblock"),
], ids=["needs_recovery", "errors", "unclean", "compression", "group-count", "uninit-flag", "desc-csum",
        "sb-count"])
def test_dirty_damaged_or_unsupported_is_read_whole(tmp_path, setup, reason):
    image = mkfs(tmp_path / "fs.img", "ext4", random_files(2, MIB, seed=5))
    setup(image)
    with pytest.raises(ReadWhole, match=reason):
        answer(ext.free_space, image)


def test_damaged_bitmaps_are_read_whole(tmp_path):
    """A used block cleared in a bitmap: the checksum (metadata_csum) or, without one, the group's
    free count gives it away."""
    for variant, reason in (("ext4", "bitmap checksum mismatch in group 0"), ("ext2", "count of group 0")):
        image = mkfs(tmp_path / f"{variant}.img", variant, random_files(2, MIB, seed=6))
        out = run("dumpe2fs", image).stdout.decode()
        bitmap = int(re.search(r"Block bitmap at (\d+)", out).group(1))
        data = int(run("debugfs", "-R", "blocks /f0.bin", image).stdout.split()[0])
        assert data < 2048  # in group 0
        _patched(image, bitmap * 4096 + data // 8, "<B", 0)
        with pytest.raises(ReadWhole, match=reason):
            answer(ext.free_space, image)


def test_bigalloc_and_unknown_features_are_read_whole(tmp_path):
    image = blank(tmp_path / "big.img", 64 * MIB)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-O", "bigalloc", "-C", "16384", image)
    with pytest.raises(ReadWhole, match="unsupported feature bigalloc"):
        answer(ext.free_space, image)
    image = mkfs(tmp_path / "fs.img", "ext2")
    _patched(image, 1024 + 0x60, "<I", 0x80000002)
    with pytest.raises(ReadWhole, match="unsupported feature incompat 0x80000000"):
        answer(ext.free_space, image)


def test_dispatch_by_probed_kind():
    for kind in ("ext2", "ext3", "ext4"):
        assert reader_for(kind) is ext.free_space
    assert reader_for("jbd") is None  # an external journal: no bitmaps
    assert reader_for("btrfs") is None
    for kind in ("ntfs", "xfs"):  # written on another branch; until then these are read whole
        reader = reader_for(kind)
        assert reader is None or callable(reader)
