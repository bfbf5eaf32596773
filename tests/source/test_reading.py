"""The reading plan: which partitions are read how, partitions chosen by number, label or GPT name,
and nothing skipped where partitions overlap (one's free space may be the other's data)."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent.errors import UsageError
from agent.source.partition_model import Partition, PartitionTable
from agent.source.reading import plan_reading
from agent.source.skipmap import subtract

MIB = 1 << 20


def _part(number: int, start: int, size: int, fs: str | None, label: str | None = None, name: str = "",
          type_name: str = "Linux filesystem") -> Partition:
    return Partition(number, start, size, "x", type_name, name, None, fs, label, None)


@pytest.fixture
def disk(tmp_path):
    """64 MiB: an ext4 filesystem of 32 MiB at 1 MiB, with a deleted 8 MiB file in its free space."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(64 * MIB)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-E", f"offset={MIB}", str(img), "32M"],
                   check=True, capture_output=True)
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(8 * MIB))
    subprocess.run(["debugfs", "-w", "-R", f"write {blob} blob", f"{img}?offset={MIB}"], check=True,
                   capture_output=True)
    subprocess.run(["debugfs", "-w", "-R", "rm blob", f"{img}?offset={MIB}"], check=True, capture_output=True)
    fd = os.open(img, os.O_RDONLY)
    yield lambda off, n: os.pread(fd, n, off)
    os.close(fd)


def test_a_filesystems_free_space_is_skipped_within_its_partition(disk):
    table = PartitionTable("gpt", 512, None, (_part(1, MIB, 32 * MIB, "ext4", "root", "Linux root"),), ())
    plan = plan_reading(disk, 64 * MIB, table)
    (p,) = plan.partitions
    assert p.read == "used" and p.free_bytes > 8 * MIB and "bitmap" in p.method
    assert all(MIB <= a < b <= 33 * MIB for a, b in plan.skip.ranges)
    assert plan_reading(disk, 64 * MIB, table, all_blocks=True).skip.ranges == []


def test_nothing_is_skipped_where_partitions_overlap(disk):
    table = PartitionTable("mbr", 512, None, (_part(1, MIB, 32 * MIB, "ext4"), _part(2, 16 * MIB, 40 * MIB, None)),
                           ())
    plan = plan_reading(disk, 64 * MIB, table)
    assert plan.skip.ranges and subtract(plan.skip.ranges, [(0, 16 * MIB)]) == []
    # left out, partition 2 still does not cover partition 1's shared range
    plan = plan_reading(disk, 64 * MIB, table, only=["1"])
    assert subtract(plan.not_backed_up, [(33 * MIB, 56 * MIB)]) == []


def test_partitions_are_named_by_number_label_or_gpt_name(disk):
    table = PartitionTable("gpt", 512, None, (_part(1, MIB, 32 * MIB, "ext4", "root", "Linux root"),
                                              _part(2, 40 * MIB, 8 * MIB, None, None, "scratch")), ())
    for names in (["2"], ["p2"], ["SCRATCH"], ["scratch"]):
        plan = plan_reading(disk, 64 * MIB, table, only=names)
        assert [p.read for p in plan.partitions] == ["skipped", "whole"], names
        assert plan.not_backed_up == [(MIB, 33 * MIB)]
    plan = plan_reading(disk, 64 * MIB, table, only=["ROOT"])
    assert [p.read for p in plan.partitions] == ["used", "skipped"]
    with pytest.raises(UsageError, match="no partition 'swap'.*1 \\(root\\), 2 \\(scratch\\)"):
        plan_reading(disk, 64 * MIB, table, only=["swap"])


def test_an_extended_partition_is_never_left_out_whole(disk):
    """Its logical partitions (and their link sectors) are decided one by one."""
    table = PartitionTable("mbr", 512, None, (_part(1, MIB, 32 * MIB, "ext4"),
                                              _part(2, 34 * MIB, 30 * MIB, None, type_name="extended"),
                                              _part(5, 35 * MIB, 10 * MIB, None)), ())
    plan = plan_reading(disk, 64 * MIB, table, only=["1"])
    assert [p.number for p in plan.partitions] == [1, 5]
    assert plan.not_backed_up == [(35 * MIB, 45 * MIB)]


def test_a_bare_filesystem_is_read_by_its_own_map_and_cannot_be_split(tmp_path):
    img = tmp_path / "fs.img"
    with open(img, "wb") as f:
        f.truncate(32 * MIB)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", str(img)], check=True, capture_output=True)
    fd = os.open(img, os.O_RDONLY)
    try:
        def read(off: int, n: int) -> bytes:
            return os.pread(fd, n, off)

        plan = plan_reading(read, 32 * MIB, PartitionTable("none", 512, None, (), ()))
        assert [(p.number, p.read, p.filesystem) for p in plan.partitions] == [(0, "used", "ext4")]
        with pytest.raises(UsageError, match="needs a disk with a partition table"):
            plan_reading(read, 32 * MIB, PartitionTable("none", 512, None, (), ()), only=["1"])
    finally:
        os.close(fd)
