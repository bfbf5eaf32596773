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


def test_prune_never_copies_damage_into_new_packs(cli, tmp_path):
    """Repacking moves sealed blobs as they are; each is authenticated first, so a damaged one is
    left out (and reported) instead of being copied into a fresh pack that looks sound, and a
    damaged pack no longer stops prune."""
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "1")
    cli("backup", str(img), "--json")
    old_packs = set(_data_packs(cli.repo))
    raw = img.read_bytes()
    changed = b"".join(raw[i:i + (1 << 20)] if i % (2 << 20) == 0 else bytes(reversed(raw[i:i + (1 << 20)]))
                       for i in range(0, len(raw), 1 << 20))
    img.write_bytes(changed)
    cli("backup", str(img))
    cli("forget", "--keep-last", "1")
    for pack in old_packs:  # a byte in every 64 KiB: every blob of the first backup's packs
        data = bytearray(pack.read_bytes())
        for at in range(1000, len(data) - 64, 65536):
            data[at] ^= 0x01
        pack.write_bytes(bytes(data))

    res = cli("prune", "--max-unused", "0", "--json", check=False)
    assert res.code == 0, res.err
    assert res.json()["packs_repacked"] > 0
    assert "failed authentication while being repacked" in res.err
    report = cli("check", "--read-data", "--json", check=False).json()
    new_packs = {p.name for p in _data_packs(cli.repo)} - {p.name for p in old_packs}
    assert new_packs and not new_packs & set(report["damaged_packs"]), "prune copied damaged blobs"


def test_stats_counts_around_chunks_lost_to_damage(cli, tmp_path):
    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "2")
    cli("backup", str(img))
    victim = max(_data_packs(cli.repo), key=lambda p: p.stat().st_size)
    victim.unlink()
    assert cli("check", check=False).code == 14  # records the loss
    res = cli("stats", "--json", check=False)
    assert res.code == 0, res.err
    assert res.json()["snapshots"] == 1


_FORGE = """
import sys
from agent.repo.damage import DamageRecord
from agent.repo.repository import Repository
from backends.local import LocalBackend
repo = Repository.open(LocalBackend(sys.argv[1]), open(sys.argv[2], 'rb').read().strip())
repo.save_damage(DamageRecord(packs={p: ('forged', None) for p in repo.list_packs()}, time='2030-01-01'), [])
"""


def test_a_forged_damage_record_costs_uploads_but_never_data(cli, tmp_path):
    """Whoever holds the key (a compromised backup host under append-only credentials) can write a
    damage record. It may make backups upload again, but restore still reads the recorded copies
    that authenticate, prune never deletes a pack on a record's word, and check clears it."""
    import subprocess
    import sys

    img = _random_image(tmp_path / "img", 8)
    cli("init", "--pack-size", "1")
    snap = cli("backup", str(img), "--json").json()["snapshot_id"]
    cli("forget", "--keep-last", "1")
    packs = {p.name for p in _data_packs(cli.repo)}
    subprocess.run([sys.executable, "-c", _FORGE, str(cli.repo), str(cli.passfile)], check=True, env=cli.env)

    out = tmp_path / "out.img"
    cli("restore", snap, "--to", str(out))
    assert out.read_bytes() == img.read_bytes()
    cli("prune", "--max-unused", "0")
    assert {p.name for p in _data_packs(cli.repo)} >= packs, "prune deleted packs on a record's word"
    cli("check", "--read-data", check=False)  # reads every pack: all sound, the record goes
    assert cli("check", "--read-data", "--json").json()["ok"]
    assert not list((cli.repo / "damage").glob("*"))
    cli("restore", snap, "--to", str(tmp_path / "again.img"))
    assert (tmp_path / "again.img").read_bytes() == img.read_bytes()
