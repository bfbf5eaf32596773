"""Reading less: an unchanged image file is not read again, `--partitions` keeps only the partitions
named (plus the table and the boot loader gaps), `--system` finds the running system's disk, and
`--all-blocks` keeps everything byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.errors import SourceError
from agent.source.system import find_system
from tests.diskimage import build_sample_image, change_image, require_tools
from tests.fscompare import compare

MIB = 1 << 20


@pytest.fixture
def disk(tmp_path) -> Path:
    require_tools("sgdisk", "mkfs.vfat", "mcopy", "mke2fs", "debugfs")
    path = tmp_path / "disk.img"
    build_sample_image(path, seed=7)
    return path


def _backup(cli, *args: str) -> dict:
    return cli("backup", *args, "--json").json()


def test_unchanged_image_file_is_not_read_again(cli, disk, tmp_path):
    cli("init")
    first = _backup(cli, str(disk))
    assert first["read_bytes"] > 0 and first["unchanged_from"] is None
    again = _backup(cli, str(disk))
    assert again["read_bytes"] == 0 and again["unchanged_from"] == first["snapshot_id"]
    assert again["uploaded_bytes"] == 0
    snaps = cli("snapshots", "--json").json()["snapshots"]
    assert snaps[-1]["unchanged_from"] == first["snapshot_id"]
    assert "unchanged" in cli("snapshots").out
    # --force-read reads it anyway; a touch (new times) or an in-place write of the same size too
    assert _backup(cli, str(disk), "--force-read")["read_bytes"] > 0
    os.utime(disk)
    assert _backup(cli, str(disk))["read_bytes"] > 0
    with open(disk, "r+b") as f:  # same size, same inode: only the times tell
        f.seek(30 * MIB)
        f.write(b"written in place")
    changed = _backup(cli, str(disk), "--all-blocks")
    assert changed["read_bytes"] > 0 and changed["unchanged_from"] is None
    # another reading choice is not "the same snapshot": it is read
    assert _backup(cli, str(disk))["read_bytes"] > 0
    cli("restore", changed["snapshot_id"], "--to", str(tmp_path / "r.img"))
    assert (tmp_path / "r.img").read_bytes() == disk.read_bytes()
    # the reused snapshot restores the same image as the one it reused
    cli("restore", again["snapshot_id"], "--to", str(tmp_path / "again.img"))
    cli("restore", first["snapshot_id"], "--to", str(tmp_path / "first.img"))
    assert (tmp_path / "again.img").read_bytes() == (tmp_path / "first.img").read_bytes()


def test_all_blocks_restores_byte_for_byte_and_default_keeps_every_file(cli, disk, tmp_path):
    """After a change that deletes files, free space holds old data: the default does not store it
    (the restore has zeros there, every file and both checkers are fine); --all-blocks does."""
    change_image(disk, seed=3)
    cli("init")
    used = _backup(cli, str(disk))
    full = _backup(cli, str(disk), "--all-blocks")
    assert full["read_bytes"] >= used["read_bytes"] and used["skipped_free_bytes"] > 0
    cli("restore", full["snapshot_id"], "--to", str(tmp_path / "full.img"))
    assert (tmp_path / "full.img").read_bytes() == disk.read_bytes()
    cli("restore", used["snapshot_id"], "--to", str(tmp_path / "used.img"))
    lines = compare(disk, tmp_path / "used.img", tmp_path / "cmp")
    assert any("vfat: checker clean" in s for s in lines) and any("ext4: checker clean" in s for s in lines)


def test_partitions_keeps_only_those_named(cli, disk, tmp_path):
    # 8 MiB of random data on partition 1 (the ESP): a backup of partition 2 must leave it out
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(8 * MIB))
    subprocess.run(["mcopy", "-i", f"{disk}@@{MIB}", str(blob), "::/BLOB.BIN"], check=True)
    only = tmp_path / "only"
    only.mkdir()
    cli.env["AGENT_REPO"] = str(only / "repo")
    cli("init")
    part2 = _backup(cli, str(disk), "--partitions", "2")
    cli.env["AGENT_REPO"] = str(tmp_path / "all-repo")
    cli("init")
    everything = _backup(cli, str(disk))
    # the repository without partition 1 lacks at least 95% of its random data
    assert everything["stored_bytes"] - part2["stored_bytes"] > 0.95 * 8 * MIB, (everything, part2)
    cli.env["AGENT_REPO"] = str(only / "repo")
    listed = cli("ls", "latest").out
    assert "not backed up" in listed.splitlines()[0] and "p2 only" in cli("snapshots").out
    res = cli("restore", "latest", "--to", str(tmp_path / "p2.img"))
    assert "read as zeros" in res.err
    size = disk.stat().st_size
    table = subprocess.run(["sgdisk", "-i", "2", str(disk)], capture_output=True, text=True, check=True).stdout
    start = int(table.split("First sector: ")[1].split()[0]) * 512
    end = (int(table.split("Last sector: ")[1].split()[0]) + 1) * 512
    got, want = (tmp_path / "p2.img").read_bytes(), disk.read_bytes()
    assert len(got) == size
    assert got[start:end] == want[start:end], "partition 2 is not byte-identical"
    assert got[:MIB] == want[:MIB], "the partition table and boot area were not kept"
    assert got[MIB:start].count(0) == start - MIB, "partition 1 should read as zeros in a file"
    bad = cli("restore", "latest", "--partition", "1", "--to", str(tmp_path / "p1.img"), check=False)
    assert bad.code == 2 and "was not backed up" in bad.err
    wrong = cli("backup", str(disk), "--partitions", "nope", check=False)
    assert wrong.code == 2 and "no partition 'nope'" in wrong.err


def test_partial_restore_leaves_other_partitions_untouched_on_a_device(cli, disk, tmp_path):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root for a loop device")
    cli("init")
    _backup(cli, str(disk), "--partitions", "root")  # by filesystem label
    backing = tmp_path / "target.img"
    backing.write_bytes(b"\x5a" * disk.stat().st_size)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        res = cli("restore", "latest", "--to", dev, "--force")
        assert "left untouched" in res.err
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)
    got, want = backing.read_bytes(), disk.read_bytes()
    # partition 1 (the ESP, 1 MiB .. 17 MiB) still holds the device's old bytes
    assert got[MIB:17 * MIB] == b"\x5a" * (16 * MIB)
    assert got[:MIB] == want[:MIB]


def _gpt_system_disk(path: Path) -> None:
    """ESP, /boot (ext4), / (ext4) and a data partition (ext4), as an installer lays them out."""
    size = 96 * MIB
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["sgdisk", "-n1:2048:+16M", "-t1:ef00", "-n2:0:+16M", "-t2:8300", "-n3:0:+32M", "-t3:8304",
                    "-n4:0:0", "-t4:8300", str(path)], check=True, capture_output=True)
    for n, label in ((2, "boot"), (3, "root"), (4, "data")):
        info = subprocess.run(["sgdisk", "-i", str(n), str(path)], capture_output=True, text=True, check=True).stdout
        first = int(info.split("First sector: ")[1].split()[0])
        last = int(info.split("Last sector: ")[1].split()[0])
        subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", label, "-E", f"offset={first * 512}", str(path),
                        f"{(last - first + 1) // 2}k"], check=True, capture_output=True)
    subprocess.run(["mkfs.vfat", "--offset", "2048", "-n", "ESP", str(path), str(16 * 1024)], check=True,
                   capture_output=True)


def test_system_finds_the_disk_of_the_running_root(tmp_path):
    """The stand-in for a machine: the image's root partition attached as a loop device at its offset
    and mounted at a directory, its /boot partition mounted below it; find_system looks at the mounts
    of that directory as it would at "/" and names the image and its system partitions."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root for loop devices and mounts")
    require_tools("sgdisk", "mkfs.vfat", "mke2fs")
    img = tmp_path / "machine.img"
    _gpt_system_disk(img)
    root = tmp_path / "root"
    root.mkdir()
    devs: list[str] = []
    mounted: list[Path] = []

    def attach(n: int, where: Path) -> None:
        info = subprocess.run(["sgdisk", "-i", str(n), str(img)], capture_output=True, text=True, check=True).stdout
        first = int(info.split("First sector: ")[1].split()[0])
        last = int(info.split("Last sector: ")[1].split()[0])
        dev = subprocess.run(["losetup", "--find", "--show", "-o", str(first * 512), "--sizelimit",
                              str((last - first + 1) * 512), str(img)], capture_output=True, text=True,
                             check=True).stdout.strip()
        devs.append(dev)
        subprocess.run(["mount", dev, str(where)], check=True)
        mounted.append(where)

    try:
        attach(3, root)
        (root / "boot").mkdir()
        attach(2, root / "boot")
        found = find_system(root)
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", str(where)], check=True)
        for dev in devs:
            subprocess.run(["losetup", "-d", dev], check=True)
    assert found.path == str(img)
    assert found.partitions == ["1", "2", "3"], found  # ESP by type, /boot, /; not the data partition
    assert any(s.startswith("/ on partition 3") for s in found.found)


def test_system_on_a_machine_it_cannot_back_up_says_why(cli, tmp_path):
    """Here (a container or a VM whose disk is not readable) --system fails with the reason, not a
    traceback, and writes no snapshot."""
    try:
        find_system()
    except SourceError as exc:
        reason = str(exc)
    else:
        pytest.skip("this machine's system disk is readable: backing it up is not a test")
    cli("init")
    res = cli("backup", "--system", check=False)
    assert res.code == 15 and reason in res.err and "Traceback" not in res.err
    assert cli("snapshots", "--json").json()["snapshots"] == []
