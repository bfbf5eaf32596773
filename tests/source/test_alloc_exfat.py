"""exFAT free space: dump.exfat's free-cluster count, bytes that can be zeroed without fsck.exfat or
exfat-fuse noticing, and ReadWhole for dirty or damaged volumes. Files are written through
exfat-fuse on a loop device (the kernel here has no exFAT driver)."""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.allocation import exfat, reader_for
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

pytestmark = pytest.mark.skipif(not have("mkfs.exfat", "dump.exfat", "fsck.exfat"), reason="exfatprogs not installed")
needs_fuse = pytest.mark.skipif(os.geteuid() != 0 or not have("mount.exfat-fuse", "losetup"),
                                reason="exfat-fuse on a loop device needs root")


def mkfs(image: Path, size: int = 48 * MIB, *args: str) -> Path:
    run("mkfs.exfat", *args, blank(image, size))
    return image


def write(image: Path, files: dict[str, bytes], delete: list[str], mnt: Path) -> None:
    """Write files (and their directories) through exfat-fuse, then delete some; unmount is
    synchronous for a block device, so the image is complete afterwards."""
    with loop_device(image) as dev, mounted(["mount.exfat-fuse", dev], mnt) as root:
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        os.sync()
        for name in delete:
            (root / name).unlink()


def dump_free(image: Path) -> tuple[int, int]:
    """(free clusters, cluster bytes) from dump.exfat's statistics."""
    out = run("dump.exfat", image).stdout.decode()
    return (int(re.search(r"Free Clusters:\s+(\d+)", out).group(1)),
            int(re.search(r"Cluster size:\s+(\d+)", out).group(1)))


def assert_zeroing_keeps(image: Path, free: list[tuple[int, int]], files: dict[str, bytes], tmp: Path) -> None:
    """Overwriting every free byte with zeros, then junk, leaves fsck.exfat clean and every file
    readable, byte for byte, through a read-only exfat-fuse mount."""
    for byte in (0x00, 0xAA):
        copy = filled_copy(image, free, byte, tmp / f"filled-{byte}.img")
        check = run("fsck.exfat", "-n", copy, check=False)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        with loop_device(copy) as dev, mounted(["mount.exfat-fuse", "-o", "ro", dev], tmp / "check") as root:
            for name, data in files.items():
                assert (root / name).read_bytes() == data, name
        copy.unlink()


def test_fresh_volume_matches_dump_exfat(tmp_path):
    for args in ([], ["-c", "64K"], ["--pack-bitmap"]):
        image = mkfs(tmp_path / "fs.img", 48 * MIB, *args)
        got = answer(exfat.free_space, image)
        free, cluster = dump_free(image)
        assert got.free_bytes == free * cluster, args
        assert got.free[0][0] >= struct.unpack_from("<I", image.read_bytes(), 88)[0] * 512


@needs_fuse
def test_zeroing_free_space_keeps_every_file(tmp_path):
    files = random_files(4, 8 * MIB, seed=2)
    files["dir/sub/small.txt"] = b"small" * 100
    image = mkfs(tmp_path / "fs.img")
    before = answer(exfat.free_space, mkfs(tmp_path / "empty.img"))
    write(image, files, ["f1.bin", "f3.bin"], tmp_path / "mnt")
    got = answer(exfat.free_space, image)
    free, cluster = dump_free(image)
    assert got.free_bytes == free * cluster
    assert before.free_bytes - got.free_bytes <= 16 * MIB + 1 * MIB  # the deleted 16 MiB are free again
    kept = {k: v for k, v in files.items() if k not in ("f1.bin", "f3.bin")}
    assert_zeroing_keeps(image, got.free, kept, tmp_path)


@needs_fuse
def test_a_copy_taken_while_mounted_is_read_whole(tmp_path):
    image = mkfs(tmp_path / "fs.img")
    with loop_device(image) as dev, mounted(["mount.exfat-fuse", dev], tmp_path / "mnt") as root:
        (root / "a.bin").write_bytes(b"a" * 100000)
        os.sync()
        dirty = tmp_path / "dirty.img"
        shutil.copyfile(image, dirty)
    with pytest.raises(ReadWhole, match="not unmounted cleanly"):
        answer(exfat.free_space, dirty)
    answer(exfat.free_space, image)


trees = st.dictionaries(
    st.sampled_from(["a.bin", "B.TXT", "dir/c.bin", "dir/sub/long file name.dat", "g.bin"]),
    st.tuples(st.integers(0, 3 * MIB), st.integers(0, 1 << 30)),
    min_size=1, max_size=5,
)


@needs_fuse
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_generated_trees_survive_zeroing(tmp_path_factory, tree):
    tmp = tmp_path_factory.mktemp("tree")
    files = {name: random_files(1, size, seed)["f0.bin"] if seed % 2 else bytes([seed % 251]) * size
             for name, (size, seed) in tree.items()}
    doomed = [sorted(files)[0]] if len(files) > 1 else []
    image = mkfs(tmp / "fs.img", 32 * MIB)
    write(image, files, doomed, tmp / "mnt")
    for name in doomed:
        del files[name]
    got = answer(exfat.free_space, image)
    free, cluster = dump_free(image)
    assert got.free_bytes == free * cluster
    assert_zeroing_keeps(image, got.free, files, tmp)


@pytest.fixture(scope="module")
def damaged_base(tmp_path_factory) -> bytes:
    image = mkfs(tmp_path_factory.mktemp("base") / "fs.img", 32 * MIB)
    return image.read_bytes()


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.sampled_from([0, 1 * MIB, 2 * MIB]), st.integers(0, (64 << 10) - 1),
                                st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 32 * MIB), fix_checksum=st.booleans())
def test_damaged_metadata_gives_an_answer_or_read_whole(damaged_base, flips, cut, fix_checksum):
    """Flips in the boot region, the FAT (at 1 MiB) and the start of the heap (at 2 MiB: bitmap,
    up-case table, root directory); with the boot checksum redone, so damage gets past it."""
    flips = [(window + offset, mask or 1) for window, offset, mask in flips]
    if fix_checksum:
        head = bytearray(damaged_base[:12 * 512])
        for offset, mask in flips:
            if offset < len(head):
                head[offset] ^= mask
        good = struct.pack("<I", exfat._boot_checksum(bytes(head[:11 * 512]))) * 128
        flips += [(11 * 512 + i, head[11 * 512 + i] ^ b) for i, b in enumerate(good) if head[11 * 512 + i] != b]
    answer_or_read_whole(exfat.free_space, *damaged(damaged_base, flips, cut))


def _patched(image: Path, offset: int, value: bytes) -> Path:
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(value)
    return image


@pytest.mark.parametrize("offset, value, reason", [
    (106, b"\x02\x00", "not unmounted cleanly"),  # VolumeDirty: outside the boot checksum
    (104, b"\x00\x02", "unsupported exFAT revision"),
    (100, b"\x12\x34", "boot region checksum mismatch"),  # the serial number
    (3, b"NTFS", "no exFAT boot sector"),
], ids=["dirty", "revision", "checksum", "magic"])
def test_dirty_or_damaged_boot_sector_is_read_whole(tmp_path, offset, value, reason):
    image = _patched(mkfs(tmp_path / "fs.img", 32 * MIB), offset, value)
    with pytest.raises(ReadWhole, match=reason):
        answer(exfat.free_space, image)


def test_dispatch_by_probed_kind():
    assert reader_for("exfat") is exfat.free_space
