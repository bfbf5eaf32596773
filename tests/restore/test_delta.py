"""`restore --delta` onto an older copy and `restore --seed`: byte-identical results that fetch only
what changed, sparse new files, and one clear line for targets that cannot work."""

from __future__ import annotations

import os

import pytest

MiB = 1 << 20


def _day2(tmp_path) -> tuple[str, ...]:
    """The newest snapshot, new.img's: `latest` of two sources names its source (docs/restore.md)."""
    return "latest", "--source", str(tmp_path / "new.img")


@pytest.mark.parametrize("read", [[], ["--compare-all"]], ids=["stamp", "compare-all"])
def test_delta_onto_an_older_restore_fetches_only_the_changes(cli, tmp_path, two_days, read):
    """By the target's stamp (agent.restore.stamp), and by reading it."""
    old, new, stored = two_days
    target = tmp_path / "restored.img"
    cli("restore", _id(cli, "day1"), "--to", str(target))
    full = cli("restore", "--json", *_day2(tmp_path), "--to", str(tmp_path / "full.img")).json()

    # no --force: that is the point
    res = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta", *read)
    out = res.json()
    assert target.read_bytes() == new.read_bytes()
    assert out["fetched_bytes"] <= 1.1 * stored + 64 * 1024, (out, stored)
    assert out["fetched_bytes"] < full["fetched_bytes"] / 4
    # 40 MiB, of which 5 MiB changed in four places. Reading finds every chunk whose bytes stayed;
    # the stamp compares chunk lists, where a chunk whose bytes stayed but that day1 cut otherwise
    # (next to a change; chunks are at most 1 MiB) counts as changed: 29.7 MiB was seen on random data
    assert out["reused_bytes"] >= (26 if not read else 30) * MiB
    assert out["verified_bytes"] < out["written_bytes"]  # from the page cache: only zeroed ranges are read back

    again = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta", *read).json()  # nothing left
    assert again["written_bytes"] == 0 and again["fetched_bytes"] < 64 * 1024
    assert target.read_bytes() == new.read_bytes()


def test_delta_with_sync_reads_back_from_the_disk_everything_it_wrote(cli, tmp_path, two_days):
    target = tmp_path / "restored.img"
    cli("restore", _id(cli, "day1"), "--to", str(target))
    out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta", "--sync").json()
    assert out["written_bytes"] > 0 and out["verified_bytes"] >= out["written_bytes"]
    plain = cli("restore", *_day2(tmp_path), "--to", str(tmp_path / "seeded.img"), "--seed", str(target))
    assert "verified: each chunk by its id before it was written" in plain.out, plain.out


def test_delta_onto_a_changed_larger_target_cuts_it_and_fixes_every_byte(cli, tmp_path, two_days):
    old, new, _ = two_days
    target = tmp_path / "other.img"
    with open(target, "wb") as f:  # someone else's data, longer than the image, no holes
        f.write(b"\xa5" * (48 * MiB))
    cli("restore", *_day2(tmp_path), "--to", str(target), "--delta")
    assert target.read_bytes() == new.read_bytes()


def test_delta_onto_a_smaller_target_is_refused_in_one_line(cli, tmp_path, two_days):
    target = tmp_path / "small.img"
    target.write_bytes(b"\x01" * MiB)
    res = cli("restore", *_day2(tmp_path), "--to", str(target), "--delta", check=False)
    assert res.code == 16, res
    assert "fewer than the image" in res.err and "Traceback" not in res.err
    assert target.read_bytes() == b"\x01" * MiB


def test_seed_supplies_matching_chunks_into_a_new_sparse_file(cli, tmp_path, two_days):
    old, new, stored = two_days
    stranger = tmp_path / "stranger.img"
    stranger.write_bytes(os.urandom(8 * MiB))
    target = tmp_path / "seeded.img"
    res = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--seed", str(old), "--seed", str(stranger))
    out = res.json()
    assert target.read_bytes() == new.read_bytes()
    seeded = {s["seed"]: s["bytes"] for s in out["seeded"]}
    assert seeded[str(old)] >= 20 * MiB and seeded[str(stranger)] == 0
    assert "supplied nothing" in res.err
    assert out["fetched_bytes"] <= 1.1 * stored + 64 * 1024
    plain = tmp_path / "plain.img"
    cli("restore", *_day2(tmp_path), "--to", str(plain))
    # as sparse as a plain restore (give or take a file system metadata block for the extent tree)
    assert os.stat(target).st_blocks * 512 <= os.stat(plain).st_blocks * 512 + 64 * 1024
    assert os.stat(target).st_blocks * 512 < 32 * MiB


def test_a_seed_supplies_only_chunks_whose_bytes_match(cli, tmp_path, two_days):
    """One changed byte per 64 KiB: every chunk of the first 20 MiB differs, so those are fetched."""
    old, new, _ = two_days
    seed = tmp_path / "seed.img"
    seed.write_bytes(old.read_bytes())
    with open(seed, "r+b") as f:
        for off in range(0, 20 * MiB, 64 * 1024):  # no chunk is shorter than 64 KiB
            f.seek(off)
            byte = f.read(1)
            f.seek(off)
            f.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "t.img"
    out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--seed", str(seed)).json()
    assert target.read_bytes() == new.read_bytes()
    # only the untouched region at 28-32 MiB, give or take a chunk (at most 1 MiB) across each of its
    # edges and one across the end of the changed bytes at 20 MiB (it may reach past the last change)
    assert 3 * MiB <= out["seeded"][0]["bytes"] <= 7 * MiB


def test_missing_seed_is_one_line_and_leaves_no_target(cli, tmp_path, two_days):
    target = tmp_path / "t.img"
    res = cli("restore", *_day2(tmp_path), "--to", str(target), "--seed", str(tmp_path / "nope.img"), check=False)
    assert res.code == 16 and "does not exist" in res.err and "Traceback" not in res.err
    assert not target.exists() and not (tmp_path / ".t.img.agent-restore").exists()


def _id(cli, tag: str) -> str:
    snaps = cli("snapshots", "--json").json()["snapshots"]
    return next(s["id"] for s in snaps if tag in s["tags"])


@pytest.mark.parametrize("mode", ["--delta", "--compare-all", "--seed"])
def test_data_shifted_by_an_insertion_is_found_where_it_moved(cli, tmp_path, mode):
    """1000 bytes inserted early in the disk shift everything after them: the chunks are the same
    (content-defined), only their places differ, and none of them is fetched again."""
    old = tmp_path / "old.img"
    old.write_bytes(os.urandom(24 * MiB))
    data = old.read_bytes()
    new = tmp_path / "new.img"
    new.write_bytes((data[:2 * MiB] + os.urandom(1000) + data[2 * MiB:])[:24 * MiB])
    cli("init")
    cli("backup", str(old), "--tag", "day1")
    stored = cli("backup", "--json", str(new)).json()["stored_bytes"]
    assert stored < 2 * MiB  # the backup deduplicated the shifted data
    target = tmp_path / "t.img"
    if mode == "--delta":
        cli("restore", _id(cli, "day1"), "--to", str(target))
        out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta").json()
    elif mode == "--compare-all":
        cli("restore", _id(cli, "day1"), "--to", str(target))
        out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--delta", "--compare-all").json()
        assert out["held_snapshot"] is None
    else:
        out = cli("restore", "--json", *_day2(tmp_path), "--to", str(target), "--seed", str(old)).json()
    assert target.read_bytes() == new.read_bytes()
    assert out["fetched_bytes"] <= 1.1 * stored + 64 * 1024, (out, stored)


def test_delta_onto_a_disk_and_refusals(cli, tmp_path, two_days, loop_device):
    import subprocess

    old, new, stored = two_days
    dev = loop_device(48 * MiB)
    with open(dev, "r+b") as f:  # old content after the image's end stays; zeros of the image must be written
        f.write(b"\x5a" * (48 * MiB))
    cli("restore", _id(cli, "day1"), "--to", dev, "--force")
    out = cli("restore", "--json", *_day2(tmp_path), "--to", dev, "--delta").json()
    with open(dev, "rb") as f:
        assert f.read(40 * MiB) == new.read_bytes()
        assert f.read() == b"\x5a" * (8 * MiB)
    assert out["fetched_bytes"] <= 1.1 * stored + 64 * 1024

    small = loop_device(32 * MiB)
    res = cli("restore", *_day2(tmp_path), "--to", small, "--delta", check=False)
    assert res.code == 16 and "fewer than the image" in res.err and "Traceback" not in res.err

    fs = loop_device(48 * MiB)
    subprocess.run(["mkfs.ext4", "-q", fs], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", fs, str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount ext4 here")
    res = cli("restore", *_day2(tmp_path), "--to", fs, "--delta", check=False)
    assert res.code == 16 and "is mounted at" in res.err
