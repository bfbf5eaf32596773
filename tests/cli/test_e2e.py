"""End to end through the real CLI: a GPT disk (FAT + ext4) backed up, changed, backed up again and
restored with --at and by id, byte for byte; the repository holds no plaintext and no name derived
from unkeyed content."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.diskimage import MissingTool, build_sample_image, change_image

MARKER = b"MARKER-7f3a payroll ledger 2024 do-not-leak"


@pytest.fixture
def image(tmp_path):
    try:
        info = build_sample_image(tmp_path / "disk.img", size_mib=48, marker=MARKER)
    except MissingTool as exc:
        pytest.skip(str(exc))
    return info


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_backup_change_backup_restore_at_and_by_id(cli, image, tmp_path):
    disk = image.path
    assert MARKER in disk.read_bytes()
    cli("init")
    day0 = cli("backup", str(disk), "--time", "2024-05-01T12:00:00Z", "--tag", "nightly", "--json").json()
    shutil.copyfile(disk, tmp_path / "day0.img")
    change_image(disk, image)
    day1 = cli("backup", str(disk), "--time", "2024-05-02T12:00:00Z", "--json").json()
    assert day1["new_bytes"] < day0["new_bytes"]

    snaps = cli("snapshots", "--json").json()["snapshots"]
    assert [s["id"] for s in snaps] == [day0["snapshot_id"], day1["snapshot_id"]]
    assert snaps[0]["time"] == "2024-05-01T12:00:00Z" and snaps[0]["tags"] == ["nightly"]
    assert snaps[1]["parent"] == day0["snapshot_id"] and snaps[0]["size"] == disk.stat().st_size

    cli("restore", "--at", "2024-05-01", "--to", str(tmp_path / "r0.img"))
    cli("restore", "--at", "2024-05-02", "--to", str(tmp_path / "r1.img"))
    cli("restore", day0["snapshot_id"][:8], "--to", str(tmp_path / "r0-by-id.img"))
    cli("restore", "latest", "--to", str(tmp_path / "r1-latest.img"))
    assert (tmp_path / "r0.img").read_bytes() == (tmp_path / "day0.img").read_bytes()
    assert (tmp_path / "r0-by-id.img").read_bytes() == (tmp_path / "day0.img").read_bytes()
    assert (tmp_path / "r1.img").read_bytes() == disk.read_bytes()
    assert (tmp_path / "r1-latest.img").read_bytes() == disk.read_bytes()
    # zero runs became holes
    assert os.stat(tmp_path / "r1.img").st_blocks * 512 < disk.stat().st_size // 2

    # an unchanged disk adds (almost) nothing
    again = cli("backup", str(disk), "--json").json()
    assert again["new_bytes"] == 0
    assert again["stored_bytes"] < disk.stat().st_size * 0.001

    # no plaintext, and every content-addressed name is the hash of its (encrypted) bytes
    files = _files(cli.repo)
    assert files
    for name, data in files.items():
        assert MARKER not in data, name
        assert b"payroll" not in data, name
        top, base = name.split("/")[0], name.rsplit("/", 1)[-1]
        if top in ("data", "index", "snapshots"):
            assert base == hashlib.sha256(data).hexdigest(), name
        elif top == "keys":
            assert len(base) == 32 and int(base, 16) >= 0
    assert cli("check", "--read-data").code == 0


def test_partition_table_is_recorded(cli, image):
    cli("init")
    cli("backup", str(image.path))
    from agent.repo.repository import Repository
    from backends.local import LocalBackend

    repo = Repository.open(LocalBackend(cli.repo), cli.passfile.read_bytes().strip())
    snap = repo.list_snapshots()[0]
    table = snap.partition_table
    assert table["scheme"] == "gpt"
    assert [p["filesystem"] for p in table["partitions"]] == ["vfat", "ext4"]
    assert snap.source["kind"] == "file"


def test_wrong_passphrase_changes_nothing(cli, image, tmp_path):
    cli("init")
    cli("backup", str(image.path))
    before = {p: p.stat().st_mtime_ns for p in cli.repo.rglob("*")}
    bad = tmp_path / "bad"
    bad.write_text("not the passphrase\n")
    for args in (["backup", str(image.path)], ["snapshots"], ["restore", "latest", "--to", str(tmp_path / "x.img")]):
        res = cli(*args, check=False, env={"AGENT_PASSPHRASE_FILE": str(bad)})
        assert res.code == 11, res.err
        assert "wrong passphrase" in res.err and "Traceback" not in res.err
    assert {p: p.stat().st_mtime_ns for p in cli.repo.rglob("*")} == before
    assert not (tmp_path / "x.img").exists()


def test_agent_kdf_sets_the_cost_of_new_key_files_and_out_of_range_values_are_refused(cli):
    res = cli("init", check=False, env={"AGENT_KDF": "1,4,1"})  # 4 KiB: below Argon2id's minimum
    assert res.code == 2 and "AGENT_KDF" in res.err and "'1,4,1'" in res.err and "Traceback" not in res.err
    assert not cli.repo.exists()
    cli("init", env={"AGENT_KDF": "2,64,1"})
    (keyfile,) = (cli.repo / "keys").iterdir()
    assert json.loads(keyfile.read_text())["kdf"] == {"time_cost": 2, "memory_kib": 64, "parallelism": 1,
                                                      "algorithm": "argon2id"}
    assert cli("snapshots", env={"AGENT_KDF": "1,8,1"}).code == 0  # opening uses the key file's own cost


def test_clear_errors_for_missing_repo_source_and_newer_format(cli, tmp_path):
    res = cli("snapshots", check=False)
    assert res.code == 10 and "no repository" in res.err and "Traceback" not in res.err
    cli("init")
    res = cli("backup", "/dev/does-not-exist", check=False)
    assert res.code == 15 and "does not exist" in res.err
    cfg = cli.repo / "config"
    cfg.write_text(cfg.read_text().replace('"version": 1', '"version": 99'))
    res = cli("snapshots", check=False)
    assert res.code == 12 and "newer" in res.err and "upgrade" in res.err


def test_restore_refuses_non_empty_target_without_force(cli, image, tmp_path):
    cli("init")
    cli("backup", str(image.path))
    target = tmp_path / "busy.img"
    target.write_bytes(b"precious")
    res = cli("restore", "latest", "--to", str(target), check=False)
    assert res.code == 16 and "--force" in res.err
    assert target.read_bytes() == b"precious"
    cli("restore", "latest", "--to", str(target), "--force")
    assert target.read_bytes() == image.path.read_bytes()


def test_restore_force_over_a_larger_image_full_of_ff_leaves_holes_not_old_bytes(cli, image, tmp_path):
    """--force over an old image: its bytes must not survive where the snapshot has zero runs."""
    cli("init")
    cli("backup", str(image.path))
    size = image.path.stat().st_size
    target = tmp_path / "old.img"
    target.write_bytes(b"\xff" * (size + (1 << 20)))
    cli("restore", "latest", "--to", str(target), "--force")
    assert target.stat().st_size == size
    assert target.read_bytes() == image.path.read_bytes()
    assert target.stat().st_blocks * 512 < size  # the zero runs are holes again
