"""Damage and interruption: a flipped byte in a pack, and `kill -9` of a backup at several points."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


def _random_image(path: Path, mib: int, seed: int = 7) -> Path:
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        for i in range(mib):
            # half random, half compressible text: realistic and distinct per MiB
            f.write(rng.randbytes(512 << 10) + (f"line {i} ".encode() * 60000)[: 512 << 10])
    return path


def _data_packs(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "data").rglob("*") if p.is_file() and not p.name.startswith("."))


def test_flipped_byte_is_found_and_reported(cli, tmp_path):
    img = _random_image(tmp_path / "img", 12)
    cli("init", "--pack-size", "2")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    assert cli("check").code == 0
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    victim.write_bytes(bytes(raw))

    res = cli("check", "--read-data", check=False)
    assert res.code == 14
    assert victim.name[:16] in res.out and snap[:8] in res.out
    report = cli("check", "--read-data", "--json", check=False).json()
    assert victim.name in report["damaged_packs"] and snap in report["affected_snapshots"]

    # check recorded the damage: restore names the loss and the way out before reading anything
    res = cli("restore", "latest", "--to", str(tmp_path / "out.img"), check=False)
    assert res.code == 14 and f"its pack {victim.name[:16]} damaged" in res.err and "--ignore-errors" in res.err
    assert "Traceback" not in res.err

    res = cli("restore", "latest", "--to", str(tmp_path / "out2.img"), "--ignore-errors", "--json", check=False)
    assert res.code == 3
    damaged = res.json()["damaged_ranges"]
    assert damaged
    # check named exactly the ranges restore could not recover (damaged blobs, not the whole pack)
    assert report["affected_snapshots"][snap] == damaged
    original, restored = img.read_bytes(), (tmp_path / "out2.img").read_bytes()
    for off, n in damaged:
        assert restored[off:off + n] == bytes(n)
    # everything outside the damaged ranges is intact
    mask = bytearray(original)
    for off, n in damaged:
        mask[off:off + n] = bytes(n)
    assert bytes(mask) == restored


def test_subset_check_reads_some_packs(cli, tmp_path):
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "1")
    cli("backup", str(img))
    rep = cli("check", "--read-data-subset", "25%", "--json").json()
    assert rep["ok"] and 0 < rep["packs_read"] < rep["packs"]


@pytest.mark.parametrize("kill_after_packs", [1, 10, 30])
def test_kill_9_mid_backup_then_check_and_resume(cli, tmp_path, kill_after_packs):
    img = _random_image(tmp_path / "img", 96)
    cli("init", "--pack-size", "1")
    proc = cli.popen("backup", str(img))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (cli.repo / "data").is_dir() and len(_data_packs(cli.repo)) >= kill_after_packs:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail("backup finished before it could be killed; make the image larger")
    proc.kill()
    proc.wait()
    written = len(_data_packs(cli.repo))
    assert written >= kill_after_packs
    assert not (cli.repo / "snapshots").exists() or not list((cli.repo / "snapshots").iterdir())

    assert cli("check").code == 0  # orphans are a warning, not an error
    res = cli("backup", str(img), "--json").json()
    assert res["recovered_packs"] >= 1
    assert res["new_bytes"] < res["source_bytes"]  # what was uploaded before the kill is reused
    assert cli("check", "--read-data").code == 0
    cli("restore", "latest", "--to", str(tmp_path / "out.img"))
    assert (tmp_path / "out.img").read_bytes() == img.read_bytes()


def test_subset_slices_cover_every_pack(cli, tmp_path):
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "1")
    cli("backup", str(img))
    reports = [cli("check", "--read-data-subset", f"{n}/4", "--json").json() for n in range(1, 5)]
    assert sum(r["packs_read"] for r in reports) == reports[0]["packs"]
    assert all(r["ok"] for r in reports)
