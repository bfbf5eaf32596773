"""`agent repair index|packs|snapshots` through the real CLI: each brings `check --read-data` back to
clean, loses nothing that was readable, and says what it did (or with --dry-run, would do)."""

from __future__ import annotations

from pathlib import Path

from tests.maintenance.test_damage import _data_packs, _random_image


def _files(repo: Path, prefix: str) -> list[Path]:
    return sorted(p for p in (repo / prefix).rglob("*") if p.is_file() and not p.name.startswith("."))


def _tree(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*")
            if p.is_file() and "locks" not in p.parts}


def _restores(cli, tmp_path: Path, snap: str, expected: bytes, *extra: str) -> bytes:
    out = tmp_path / f"r-{snap[:8]}-{len(list(tmp_path.iterdir()))}.img"
    cli("restore", snap, "--to", str(out), *extra, check=False)
    data = out.read_bytes()
    if expected is not None:
        assert data == expected
    return data


def test_repair_packs_salvages_a_pack_with_a_flipped_byte(cli, tmp_path):
    img = _random_image(tmp_path / "img", 12)
    cli("init", "--pack-size", "2")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    victim.write_bytes(bytes(raw))
    assert cli("check", "--read-data", check=False).code == 14

    before = _tree(cli.repo)
    dry = cli("repair", "packs", "--dry-run", "--json").json()
    assert dry["dry_run"] and dry["counts"]["packs"] == 1 and dry["counts"]["blobs_lost"] == 1
    assert dry["counts"]["blobs_salvaged"] > 0
    assert _tree(cli.repo) == before, "--dry-run changed the repository"
    assert "dry run: pack" in cli("repair", "packs", "--dry-run").out

    rep = cli("repair", "packs", "--json").json()
    assert rep["counts"] == dry["counts"]
    assert not victim.exists()
    # one blob is gone for good: check says which snapshot lacks it, and nothing else is wrong
    report = cli("check", "--read-data", "--json", check=False).json()
    assert not report["damaged_packs"] and list(report["affected_snapshots"]) == [snap]
    lost = report["affected_snapshots"][snap]
    assert len(lost) == 1

    # marking keeps the snapshot and turns the error into a warning; check is clean
    marked = cli("repair", "snapshots", "--json").json()
    assert marked["counts"] == {"snapshots_marked": 1}
    report = cli("check", "--read-data", "--json").json()
    assert report["ok"] and any(snap[:8] in w for w in report["warnings"])

    # --zero-lost replaces it by a snapshot that restores without errors, zeros where data was lost
    fixed = cli("repair", "snapshots", "--zero-lost", "--json").json()
    assert fixed["counts"] == {"snapshots_repaired": 1}
    snaps = cli("snapshots", "--json").json()["snapshots"]
    assert [s["repaired_from"] for s in snaps] == [snap] and "repaired" in snaps[0]["tags"]
    assert snaps[0]["lost_bytes"] == lost[0][1]
    expected = bytearray(img.read_bytes())
    off, n = lost[0]
    expected[off:off + n] = bytes(n)
    _restores(cli, tmp_path, snaps[0]["id"], bytes(expected))
    report = cli("check", "--read-data", "--json").json()
    assert report["ok"] and not report["warnings"] and not report["affected_snapshots"]


def test_truncated_pack_loses_only_its_header_and_repair_salvages_every_blob(cli, tmp_path):
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "2")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:-1])
    report = cli("check", "--read-data", "--json", check=False).json()
    assert victim.name in report["damaged_packs"]
    assert report["affected_snapshots"] == {}, "the index still locates every blob of the pack"
    _restores(cli, tmp_path, snap, img.read_bytes())
    rep = cli("repair", "packs", "--json").json()
    assert rep["counts"]["blobs_lost"] == 0 and rep["counts"]["blobs_salvaged"] > 0
    assert cli("check", "--read-data", "--json").json()["ok"]
    _restores(cli, tmp_path, snap, img.read_bytes())


def test_repair_index_after_damaged_and_lost_segments(cli, tmp_path):
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "1")
    first = cli("backup", str(img), "--json").json()["snapshot_id"]
    img2 = tmp_path / "img2"
    img2.write_bytes(img.read_bytes()[: 4 << 20] + _random_image(tmp_path / "x", 4, seed=9).read_bytes())
    second = cli("backup", str(img2), "--json").json()["snapshot_id"]
    segments = _files(cli.repo, "index")
    assert len(segments) >= 2
    segments[0].write_bytes(b"\0" * 4096)
    segments[1].unlink()
    assert cli("check", check=False).code == 14

    before = _tree(cli.repo)
    dry = cli("repair", "index", "--dry-run", "--json").json()
    assert dry["counts"]["segments_damaged"] == 1 and dry["counts"]["headers_read"] >= 1
    assert _tree(cli.repo) == before
    rep = cli("repair", "index", "--json").json()
    assert rep["counts"]["packs"] == len(_data_packs(cli.repo))
    assert len(_files(cli.repo, "index")) == 1
    report = cli("check", "--read-data", "--json").json()
    assert report["ok"] and not report["warnings"]
    _restores(cli, tmp_path, first, img.read_bytes())
    _restores(cli, tmp_path, second, img2.read_bytes())


def test_repair_index_forgets_a_missing_pack_and_snapshots_then_say_what_is_lost(cli, tmp_path):
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "2")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    victim.unlink()
    rep = cli("repair", "index", "--json").json()
    assert rep["counts"]["packs_missing"] == 1 and any(victim.name[:16] in a for a in rep["actions"])
    report = cli("check", "--json", check=False).json()
    assert not report["ok"] and list(report["affected_snapshots"]) == [snap]
    cli("repair", "snapshots", "--zero-lost")
    assert cli("check", "--read-data", "--json").json()["ok"]


def test_repair_snapshots_removes_an_unreadable_manifest_and_keeps_the_others(cli, tmp_path):
    img = _random_image(tmp_path / "img", 4)
    cli("init")
    keep = cli("backup", str(img), "--json").json()["snapshot_id"]
    cli("backup", str(img), "--tag", "second")
    bad = next(p for p in _files(cli.repo, "snapshots") if p.name != keep)
    bad.write_bytes(bad.read_bytes()[:-1])
    assert cli("check", check=False).code == 14
    dry = cli("repair", "snapshots", "--dry-run", "--json").json()
    assert dry["counts"] == {"manifests_removed": 1} and bad.exists()
    cli("repair", "snapshots")
    assert not bad.exists()
    assert cli("check", "--read-data", "--json").json()["ok"]
    _restores(cli, tmp_path, keep, img.read_bytes())


def test_nothing_to_repair_on_a_clean_repository(cli, tmp_path):
    img = _random_image(tmp_path / "img", 2)
    cli("init")
    cli("backup", str(img))
    before = _tree(cli.repo)
    assert "no pack is recorded as damaged" in cli("repair", "packs").out
    assert "nothing to repair" in cli("repair", "snapshots").out
    assert _tree(cli.repo) == before
