"""One damaged small object must not stop the repository: a run record, a stray or damaged key
file, a zero-filled lock (what a NAS leaves after a power loss)."""

from __future__ import annotations

import os
from pathlib import Path


def _image(path: Path, mib: int = 3) -> Path:
    path.write_bytes(os.urandom(mib << 20))
    return path


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def _damage_first_byte(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[0] ^= 0x01
    p.write_bytes(bytes(raw))


def test_a_damaged_run_record_is_reported_and_removed_but_stops_nothing(cli, tmp_path):
    img = _image(tmp_path / "disk.img")
    cli("init")
    assert cli("backup", str(img), "--max-duration", "0s", check=False).code == 3  # leaves a run record
    (record,) = _files(cli.repo / "runs")
    _damage_first_byte(record)

    backup = cli("backup", str(img))
    assert "damaged run record" in backup.err and record.name[:8] in backup.err
    check = cli("check")
    assert check.code == 0 and f"run record {record.name[:8]} is damaged" in check.out + check.err
    listed = cli("snapshots", "--all")
    assert "is damaged and not listed" in listed.err
    prune = cli("prune")
    assert "removing 1 damaged run record" in prune.err + prune.out
    assert not record.exists()
    assert cli("check", "--read-data").code == 0


def test_a_stray_or_damaged_key_file_does_not_lock_out_the_others(cli, tmp_path):
    cli("init")
    (cli.repo / "keys" / ("f" * 64)).write_bytes(b"\x00" * 512)  # zero-filled
    junk = cli.repo / "keys" / ("e" * 64)
    junk.write_text("not a key file")
    assert cli("snapshots").code == 0  # the real key still opens

    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    res = cli("snapshots", check=False, env={"AGENT_PASSPHRASE_FILE": str(wrong)})
    assert res.code == 11
    assert "wrong passphrase" in res.err and "2 key file(s) cannot be read" in res.err

    for p in _files(cli.repo / "keys"):
        p.write_text("damaged")
    res = cli("snapshots", check=False)
    assert res.code == 12 and "no key file of this repository can be read" in res.err
    assert "Traceback" not in res.err and "internal error" not in res.err


def test_a_zero_filled_lock_blocks_nobody_and_unlock_still_works(cli, tmp_path):
    img = _image(tmp_path / "disk.img")
    cli("init")
    (cli.repo / "locks").mkdir(exist_ok=True)
    bad = cli.repo / "locks" / ("a" * 64)
    bad.write_bytes(bytes(300))
    assert cli("backup", str(img)).code == 0
    res = cli("check")
    assert "1 lock record(s) are unreadable" in res.err and "`agent unlock` removes them" in res.err
    assert cli("unlock").code == 0
    assert not bad.exists(), "unlock leaves a damaged lock record behind forever"
    assert "unreadable" not in cli("check").err
    bad.write_bytes(bytes(300))
    assert cli("prune").code == 0
    assert not bad.exists(), "prune removes stale locks, and unreadable ones too"


def test_a_pack_damaged_at_its_first_byte_is_reported_not_an_internal_error(cli, tmp_path):
    img = _image(tmp_path / "disk.img", 4)
    cli("init", "--pack-size", "1")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    victim = max(_files(cli.repo / "data"), key=lambda p: p.stat().st_size)  # a data pack, not the chunk list's
    _damage_first_byte(victim)
    res = cli("check", "--read-data", "--json", check=False)
    assert res.code == 14
    report = res.json()
    assert victim.name in report["damaged_packs"] and snap in report["affected_snapshots"]
    restored = cli("restore", snap[:8], "--to", str(tmp_path / "out.img"), "--ignore-errors", check=False)
    assert "internal error" not in restored.err and "damaged range written as zeros" in restored.err


def test_a_damaged_manifest_stops_only_its_own_snapshot(cli, tmp_path):
    img = _image(tmp_path / "disk.img")
    cli("init")
    first = cli("backup", str(img), "--json").json()["snapshot_id"]
    first_bytes = img.read_bytes()
    img.write_bytes(first_bytes[: 2 << 20] + os.urandom(1 << 20))
    second = cli("backup", str(img), "--json").json()["snapshot_id"]
    manifest = cli.repo / "snapshots" / second
    _damage_first_byte(manifest)
    cache = cli.tmp / "cache"
    for p in cache.rglob("*"):  # the cache would hide the damage from this machine
        if p.is_file() and p.name == second:
            p.unlink()

    listed = cli("snapshots", "--json")
    assert [s["id"] for s in listed.json()["snapshots"]] == [first]
    assert f"snapshot {second[:8]} is not listed" in listed.err
    out = tmp_path / "first.img"
    cli("restore", first[:8], "--to", str(out))  # the intact snapshot restores, byte for byte
    assert out.read_bytes() == first_bytes
    asked = cli("restore", second[:8], "--to", str(tmp_path / "second.img"), check=False)
    assert asked.code == 14 and f"snapshot {second[:8]} cannot be restored: its manifest is damaged" in asked.err
    check = cli("check", "--json", check=False)
    assert check.code == 14
    assert any(second[:8] in e and "damaged" in e for e in check.json()["errors"])
    backup = cli("backup", str(img))
    assert f"snapshot {second[:8]} is damaged and ignored" in backup.err
    prune = cli("prune", check=False)  # deleting code must not act without knowing every snapshot
    assert prune.code == 14 and second[:8] in prune.err
    assert "repair snapshots" in prune.err


def test_a_damaged_index_segment_is_rebuilt_from_pack_headers_by_the_next_backup(cli, tmp_path):
    img = _image(tmp_path / "disk.img", 4)
    cli("init", "--pack-size", "1")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    (segment,) = _files(cli.repo / "index")
    _damage_first_byte(segment)
    for p in (cli.tmp / "cache").rglob("*"):
        if p.is_file() and p.name == segment.name:
            p.unlink()

    out = tmp_path / "out.img"
    restored = cli("restore", snap[:8], "--to", str(out))  # from the packs' own headers
    assert out.read_bytes() == img.read_bytes() and "is damaged and ignored" in restored.err
    check = cli("check", "--read-data", "--json", check=False)
    assert check.code == 14 and check.json()["affected_snapshots"] == {}
    assert any(segment.name[:16] in e for e in check.json()["errors"])
    assert cli("prune", check=False).code == 14  # prune would take the unindexed packs for unused ones
    backup = cli("backup", str(img))  # writes a new segment for the packs the damaged one covered
    assert "indexed again from their headers" in backup.err
    moved = tmp_path / segment.name
    segment.rename(moved)  # what docs/troubleshooting.md says to do after that backup
    assert cli("check", "--read-data").code == 0
    assert cli("prune").code == 0
    cli("restore", snap[:8], "--to", str(out), "--force")
    assert out.read_bytes() == img.read_bytes()


def test_a_lost_index_segment_does_not_stop_a_restore(cli, tmp_path):
    img = _image(tmp_path / "disk.img", 4)
    cli("init", "--pack-size", "1")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    for segment in _files(cli.repo / "index"):
        segment.unlink()
    out = tmp_path / "out.img"
    res = cli("restore", snap[:8], "--to", str(out))
    assert out.read_bytes() == img.read_bytes()
    assert "are in no index segment; their headers were read instead" in res.err
    assert cli("check").code == 0  # an unindexed pack is a warning: the next backup adopts it
    cli("backup", str(img))
    assert _files(cli.repo / "index")
