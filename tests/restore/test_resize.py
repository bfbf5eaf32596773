"""Restore a 64 MiB GPT disk (ESP + ext4 root, the root last) onto disks of other sizes: larger, with
and without --grow, and smaller when the partitions fit; checked with the real tools (sgdisk -v,
e2fsck -fn, fsck.vfat -n, dumpe2fs) and byte for byte per partition. Moving the GPT needs no root
(sgdisk works on files); growing a filesystem does (a loop device at the partition's offset)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.diskimage import MissingTool, build_sample_image

MIB = 1 << 20
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"),
                                reason="growing a filesystem needs root and losetup (a loop device)")
GPT_TAIL = 33 * 512  # backup table (128 x 128 bytes) and header


def sh(*args) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """(cli, disk path, ImageInfo): one repository with one snapshot of the sample disk."""
    if not all(shutil.which(t) for t in ("sgdisk", "e2fsck", "resize2fs", "dumpe2fs", "fsck.vfat")):
        pytest.skip("needs gdisk, e2fsprogs and dosfstools")
    tmp = tmp_path_factory.mktemp("resize")
    try:
        info = build_sample_image(tmp / "disk.img", size_mib=64, marker=b"resize marker")
    except MissingTool as exc:
        pytest.skip(str(exc))
    cli = Cli(tmp)
    cli("init")
    cli("backup", str(info.path))
    return cli, info.path, info


def sgdisk_ok(path: Path) -> None:
    out = sh("sgdisk", "-v", path)
    assert "No problems found" in out, out


def last_usable(path: Path) -> int:
    return int(re.search(r"last usable sector is (\d+)", sh("sgdisk", "-p", path)).group(1))


def part_info(path: Path, n: int) -> dict[str, str]:
    return dict(re.findall(r"^([^:\n]+): (.*)$", sh("sgdisk", "-i", str(n), path), re.M))


def block_count(path: Path, offset: int) -> int:
    return int(re.search(r"Block count:\s+(\d+)", sh("dumpe2fs", "-h", f"{path}?offset={offset}")).group(1))


def same_range(a: Path, b: Path, start: int, size: int) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(start)
        fb.seek(start)
        while size:
            n = min(size, 4 * MIB)
            if fa.read(n) != fb.read(n):
                return False
            size -= n
    return True


def filesystems_clean(path: Path, info) -> None:
    esp, root = info.partitions
    sh("e2fsck", "-fn", f"{path}?offset={root.start}")
    esp_copy = path.with_suffix(".esp")
    with open(path, "rb") as f:
        f.seek(esp.start)
        esp_copy.write_bytes(f.read(esp.size))
    sh("fsck.vfat", "-n", esp_copy)


def test_a_larger_disk_gets_its_backup_gpt_at_the_new_end(backed_up, tmp_path):
    cli, disk, info = backed_up
    out = tmp_path / "big.img"
    res = cli("restore", "latest", "--to", str(out), "--size", "128MiB", "--json").json()
    assert out.stat().st_size == 128 * MIB and res["disk_size"] == 128 * MIB and res["gpt_moved"] is True
    sgdisk_ok(out)
    assert last_usable(out) == 128 * MIB // 512 - 34
    for p in info.partitions:
        assert same_range(disk, out, p.start, p.size), p  # the partitions are the image's, byte for byte
        assert part_info(out, p.number) == part_info(disk, p.number)
    filesystems_clean(out, info)


def test_a_larger_blank_file_is_a_disk_and_an_old_image_is_replaced(backed_up, tmp_path):
    cli, disk, info = backed_up
    blank, old = tmp_path / "vm.img", tmp_path / "old.img"
    with open(blank, "wb") as f:
        f.truncate(96 * MIB)  # a disk made for the restore: holes only
    cli("restore", "latest", "--to", str(blank), "--force")
    assert blank.stat().st_size == 96 * MIB
    sgdisk_ok(blank)
    assert last_usable(blank) == 96 * MIB // 512 - 34
    assert same_range(disk, blank, info.root.start, info.root.size)
    with open(old, "wb") as f:
        f.write(b"an old image")
        f.truncate(96 * MIB)
    cli("restore", "latest", "--to", str(old), "--force")
    assert old.read_bytes() == disk.read_bytes()  # replaced by the snapshot's image, size and all


@needs_root
def test_grow_extends_the_last_partition_and_its_ext4_filesystem(backed_up, tmp_path):
    cli, disk, info = backed_up
    out = tmp_path / "grown.img"
    before = part_info(disk, 2)
    res = cli("restore", "latest", "--to", str(out), "--size", "128MiB", "--grow", "--json").json()
    assert res["grown_partition"] == 2 and res["filesystem_grown"] is True
    sgdisk_ok(out)
    after = part_info(out, 2)
    assert int(after["Last sector"].split()[0]) == last_usable(out) == 128 * MIB // 512 - 34
    for key in ("Partition GUID code", "Partition unique GUID", "First sector", "Partition name"):
        assert after[key] == before[key], key
    assert same_range(disk, out, info.esp.start, info.esp.size)
    sh("e2fsck", "-fn", f"{out}?offset={info.root.start}")
    assert block_count(out, info.root.start) > block_count(disk, info.root.start)
    # the file inside is intact
    got = subprocess.run(["debugfs", "-R", "cat /home/user/marker.bin", f"{out}?offset={info.root.start}"],
                         capture_output=True, check=True).stdout
    assert b"resize marker" in got


@needs_root
def test_grow_keeps_attribute_flags(backed_up, tmp_path):
    cli, disk, _ = backed_up
    flagged = tmp_path / "flagged.img"
    shutil.copyfile(disk, flagged)
    sh("sgdisk", "-A", "2:set:60", "-A", "2:set:2", flagged)
    cli("backup", str(flagged))
    out = tmp_path / "grown.img"
    cli("restore", "latest", "--source", str(flagged), "--to", str(out), "--size", "96MiB", "--grow")
    assert part_info(out, 2)["Attribute flags"] == "1000000000000004"
    sgdisk_ok(out)


def test_a_smaller_disk_that_fits(backed_up, tmp_path):
    cli, disk, info = backed_up
    exact = info.root.start + info.root.size + GPT_TAIL  # not a byte to spare
    out = tmp_path / "small.img"
    # the module's repository also holds flagged.img (test_grow_keeps_attribute_flags): name the source
    res = cli("restore", "latest", "--source", str(disk), "--to", str(out), "--size", str(exact), "--json").json()
    assert out.stat().st_size == exact and res["written_bytes"] <= exact
    sgdisk_ok(out)
    assert last_usable(out) == (info.root.start + info.root.size) // 512 - 1
    for p in info.partitions:
        assert same_range(disk, out, p.start, p.size), p
    filesystems_clean(out, info)


def test_a_smaller_disk_that_does_not_fit_is_refused_by_name(backed_up, tmp_path):
    cli, _, info = backed_up
    need = info.root.start + info.root.size + GPT_TAIL
    out = tmp_path / "tiny.img"
    for size, lack in ((need - 512, 512), (50 * MIB, need - 50 * MIB)):
        res = cli("restore", "latest", "--source", str(info.path), "--to", str(out), "--size", str(size),
                  check=False)
        assert res.code == 16, res
        assert f"too few for partition 2 (root): the disk lacks {lack} bytes" in res.err, res.err
        assert "Traceback" not in res.err and not out.exists()


def test_a_bare_filesystem_needs_its_full_size(cli, tmp_path):
    img = tmp_path / "fs.img"
    sh("mke2fs", "-q", "-F", "-t", "ext4", img, "8M")
    cli("init")
    cli("backup", str(img))
    res = cli("restore", "latest", "--to", str(tmp_path / "x.img"), "--size", "6MiB", check=False)
    assert res.code == 16 and "fewer than the image" in res.err and "without a partition table" in res.err
    res = cli("restore", "latest", "--to", str(tmp_path / "x.img"), "--grow", check=False)
    assert res.code == 2 and "no partition table" in res.err
    assert not (tmp_path / "x.img").exists()
    cli("restore", "latest", "--to", str(tmp_path / "big.img"), "--size", "16MiB")
    assert same_range(img, tmp_path / "big.img", 0, 8 * MIB)


def test_size_and_grow_are_for_whole_disks(backed_up, tmp_path):
    cli, _, _ = backed_up
    res = cli("restore", "latest", "--partition", "2", "--grow", "--to", str(tmp_path / "p.img"), check=False)
    assert res.code == 2 and "not to --partition" in res.err
    res = cli("restore", "latest", "--size", "lots", "--to", str(tmp_path / "p.img"), check=False)
    assert res.code == 2 and "cannot read the size" in res.err
