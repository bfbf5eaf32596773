"""`agent verify [--fsck]` on real disks: every filesystem of a healthy snapshot is clean (through FUSE
and through a temporary file), an ext4 damaged before the backup is reported damaged with the
checker's own words, and a damaged chunk in the repository is reported with its image range."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.verify.disks import build_disk, damage_ext4, need

KINDS = ["ext4", "vfat", "xfs", "ntfs", "exfat"]
CHECKER = {"ext4": "e2fsck -fn", "vfat": "fsck.fat -n", "xfs": "xfs_repair -n -f", "ntfs": "ntfsfix -n",
           "exfat": "fsck.exfat -n"}


def _fuse_usable() -> bool:
    return os.path.exists("/dev/fuse") and os.geteuid() == 0


def _leftovers(tmp: Path, cache: Path) -> list[str]:
    """Mounts, mount directories and temporary partition files a verify might have left behind in
    `tmp` (the agent's TMPDIR; private to the test, so a verify that another test or another run on
    the machine has under way at the same time is not mistaken for a leftover)."""
    mounts = [line for line in Path("/proc/self/mounts").read_text().splitlines()
              if f"{tmp}/agent-verify-" in line]
    tmpdirs = [p.name for p in tmp.glob("agent-verify-*")]
    files = [p.name for p in cache.rglob("verify-*")] if cache.exists() else []
    return mounts + tmpdirs + files


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("healthy")
    parts = build_disk(tmp / "disk.img", KINDS, tmp)
    return tmp / "disk.img", parts


def test_a_healthy_snapshot_reports_every_filesystem_clean(cli, tmp_path, healthy):
    disk, parts = healthy
    cli("init")
    snap = cli("backup", str(disk), "--json").json()["snapshot_id"]
    tmpdir = tmp_path / "tmpdir"  # where the verify's mkdtemp() makes its mount directories
    tmpdir.mkdir()
    cli.env["TMPDIR"] = str(tmpdir)
    before = _leftovers(tmpdir, tmp_path / "cache")

    modes = [("--no-fuse", "temporary file")] + ([(None, "fuse")] if _fuse_usable() else [])
    for flag, via in modes:
        res = cli("verify", snap[:8], "--fsck", "--json", *([flag] if flag else []))
        out = res.json()
        assert out["status"] == "clean" and out["damaged_ranges"] == [], out
        assert out["checked_bytes"] + out["zero_bytes"] == disk.stat().st_size
        by_number = {p["number"]: p for p in out["partitions"]}
        for p in parts[:-1]:
            got = by_number[p.number]
            assert (got["filesystem"], got["status"], got["checker"], got["exit_status"], got["via"]) == \
                (p.filesystem, "clean", CHECKER[p.filesystem], 0, via), got
            assert got["output"], got  # the checker's last lines
        raw = by_number[parts[-1].number]
        assert raw["status"] == "not checked" and raw["reason"] == "no filesystem recognised", raw
        assert _leftovers(tmpdir, tmp_path / "cache") == before, via

    text = cli("verify", "latest", "--fsck")
    assert "0 damaged range(s)" in text.out
    assert f"p{parts[-1].number}  -: not checked (no filesystem recognised)" in text.out
    assert "p1  ext4 'root': clean (e2fsck -fn, exit status 0, via " in text.out, text.out


def test_an_ext4_damaged_before_the_backup_is_reported_damaged(cli, tmp_path):
    need("debugfs")
    parts = build_disk(tmp_path / "disk.img", ["vfat", "ext4"], tmp_path)
    damage_ext4(tmp_path / "disk.img", parts[1])
    cli("init")
    cli("backup", str(tmp_path / "disk.img"))

    for extra in ([], ["--no-fuse"]):
        res = cli("verify", "--fsck", "--json", *extra, check=False)
        assert res.code == 5, res.out + res.err
        out = res.json()
        assert out["status"] == "damaged" and out["damaged_ranges"] == []  # the backup holds what the disk held
        p1, p2 = out["partitions"][:2]
        assert p1["status"] == "clean" and p1["filesystem"] == "vfat"
        assert p2["status"] == "damaged" and p2["exit_status"] == 4 and p2["checker"] == "e2fsck -fn"
        assert any("Inode 2 ref count is 7, should be" in line for line in out["partitions"][1]["output"]) \
            or any("still has errors" in line for line in p2["output"]), p2["output"]

    text = cli("verify", "--fsck", check=False)
    assert text.code == 5 and "p2  ext4 'root': DAMAGED (e2fsck -fn, exit status 4" in text.out, text.out
    assert "Traceback" not in text.err
    # without --fsck only the chunks are read: they are all sound
    assert cli("verify").code == 0


def _data_packs(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "data").rglob("*") if p.is_file() and not p.name.startswith("."))


def test_a_damaged_chunk_is_reported_with_its_image_range(cli, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(os.urandom(6 << 20) + bytes(2 << 20) + os.urandom(4 << 20))
    cli("init", "--pack-size", "2")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    assert cli("verify").code == 0
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    victim.write_bytes(bytes(raw))

    res = cli("verify", snap[:8], "--json", check=False)
    assert res.code == 14, res.out + res.err
    out = res.json()
    ranges = [[d["offset"], d["length"]] for d in out["damaged_ranges"]]
    assert ranges and out["status"] == "damaged" and out["damaged_bytes"] == sum(n for _, n in ranges)
    assert all("authentication" in d["problem"] or "damaged" in d["problem"] for d in out["damaged_ranges"]), out
    # exactly what a restore cannot recover
    restored = cli("restore", "latest", "--to", str(tmp_path / "out.img"), "--ignore-errors", "--json",
                   check=False).json()
    assert restored["damaged_ranges"] == ranges
    assert out["checked_bytes"] + out["zero_bytes"] + out["damaged_bytes"] == img.stat().st_size

    text = cli("verify", check=False)
    off, n = ranges[0]
    assert text.code == 14 and f"damaged: bytes {off}..{off + n}" in text.out and "Traceback" not in text.err


def test_a_bare_filesystem_snapshot_is_checked_as_one(cli, tmp_path):
    need("mke2fs")
    from tests.verify.disks import make_fs

    make_fs("ext4", tmp_path / "root.ext4")
    cli("init")
    cli("backup", str(tmp_path / "root.ext4"))
    out = cli("verify", "--fsck", "--json", "--no-fuse").json()
    (only,) = out["partitions"]
    assert (only["number"], only["filesystem"], only["label"], only["status"]) == (None, "ext4", "root", "clean")


def test_usage_errors_are_one_line(cli, tmp_path):
    cli("init")
    res = cli("verify", "latest", "--at", "yesterday", check=False)
    assert res.code == 2 and "not both" in res.err
    res = cli("verify", check=False)
    assert res.code == 18 and "no matching snapshot" in res.err and "Traceback" not in res.err
