"""Self-healing: once `check` has found a pack damaged or lost, the next backup of a disk that still
holds the data uploads those chunks again, and older snapshots that used them restore whole."""

from __future__ import annotations

import pytest

from tests.maintenance.test_damage import _data_packs, _random_image


def _flip(path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_backup_after_check_heals_older_snapshots(cli, tmp_path, damage):
    img = _random_image(tmp_path / "img", 12)
    cli("init", "--pack-size", "2")
    first = cli("backup", str(img), "--json").json()["snapshot_id"]
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    if damage == "flip":
        _flip(victim, victim.stat().st_size // 2)
    else:
        victim.unlink()

    # without the check, nothing knows: the damage is only found when read
    res = cli("check", "--read-data", "--json", check=False)
    assert res.code == 14 and victim.name in res.json()["damaged_packs"]
    assert first in res.json()["affected_snapshots"]

    second = cli("backup", str(img), "--json").json()
    assert second["new_bytes"] > 0, "the damaged chunks must be uploaded again, not deduplicated"
    for snap in (first, second["snapshot_id"]):
        out = tmp_path / f"{snap}.img"
        cli("restore", snap, "--to", str(out))
        assert out.read_bytes() == img.read_bytes()

    report = cli("check", "--json", check=False).json()
    assert report["affected_snapshots"] == {}
    # what is left is the damaged pack itself, until `repair packs` drops it
    assert report["errors"] == ([f"pack {victim.name[:16]} is in the index but missing from storage"]
                                if damage == "delete" else [])


def test_backup_without_a_check_still_dedups_and_check_names_the_damage(cli, tmp_path):
    """The record is what makes a backup upload again; without a check, the damage is still found
    by the next check and not hidden by the new snapshot."""
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "2")
    cli("backup", str(img))
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    _flip(victim, victim.stat().st_size // 2)
    second = cli("backup", str(img), "--json").json()
    assert second["new_bytes"] == 0
    res = cli("check", "--read-data", "--json", check=False)
    assert res.code == 14 and len(res.json()["affected_snapshots"]) == 2
