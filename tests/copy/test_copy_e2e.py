"""`agent copy` end to end: three nights backed up into a local repository A are copied off-site
(S3 on moto, SFTP on a real sshd), restore byte for byte from there and check clean; a second copy
uploads nothing, a fourth night about what it stored in A, and a copy killed halfway resumes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.copy.conftest import DAYS, Target, back_up


def _target_cli(cli, target: Target) -> list[str]:
    cli.env.update(target.env)
    pw = cli.tmp / "target-passphrase"
    pw.write_text("the off-site passphrase\n")
    cli.env["AGENT_TO_PASSPHRASE_FILE"] = str(pw)
    cli.env["AGENT_FROM_PASSPHRASE_FILE"] = str(cli.passfile)
    return ["--repo", target.url, "--passphrase-file", str(pw)]


def _copy(cli, target: Target, *args: str) -> dict:
    return cli("copy", "--to-repo", target.url, *args, "--json").json()


def _restores_each_night(cli, on_b: list[str], nights: list[Path], count: int, tmp: Path) -> None:
    for i in range(count):
        out = tmp / f"restored{i}.img"
        cli(*on_b, "restore", "--at", DAYS[i], "--to", str(out), "--force")
        assert out.read_bytes() == nights[i].read_bytes(), f"night {i} differs"


def _checks_clean(cli, on_b: list[str], snapshots: int) -> None:
    report = cli(*on_b, "check", "--read-data", "--json").json()
    assert report["ok"] and not report["errors"] and not report["damaged_packs"], report
    assert report["snapshots"] == snapshots and report["packs_read"] == report["packs"] > 0


def test_three_nights_to_s3_then_again_then_a_fourth(cli, nights, s3_target, tmp_path):
    disk = tmp_path / "disk.img"
    cli("init", "--pack-size", "1")
    for i in range(3):
        back_up(cli, nights, disk, i)
    on_b = _target_cli(cli, s3_target)
    cli(*on_b, "init", "--from-repo", str(cli.repo))

    first = _copy(cli, s3_target)
    assert first["complete"] and first["mode"] == "reseal" and first["snapshots_copied"] == 3
    assert not first["dedup_lost"] and first["uploaded_packs"] == len(s3_target.packs())
    _restores_each_night(cli, on_b, nights, 3, tmp_path)
    _checks_clean(cli, on_b, 3)

    again = _copy(cli, s3_target)
    assert again["snapshots_copied"] == 0 and again["snapshots_skipped"] == 3
    assert again["uploaded_packs"] == 0 and again["uploaded_bytes"] == 0 and again["read_bytes"] == 0

    fourth = back_up(cli, nights, disk, 3)
    copied = _copy(cli, s3_target)
    assert copied["snapshots_copied"] == 1 and copied["snapshots_skipped"] == 3
    # only the night's new chunks are read (the earlier copies pair the ids) and uploaded
    assert 0 < copied["uploaded_bytes"] <= 1.05 * fourth["stored_bytes"], (copied, fourth)
    assert copied["read_bytes"] <= 1.05 * fourth["stored_bytes"]
    _restores_each_night(cli, on_b, nights, 4, tmp_path)


def test_copy_killed_halfway_resumes_and_reuploads_at_most_two_packs(cli, nights, s3_target, tmp_path):
    disk = tmp_path / "disk.img"
    cli("init", "--pack-size", "1")
    back_up(cli, nights, disk, 0)
    on_b = _target_cli(cli, s3_target)
    cli(*on_b, "init", "--from-repo", str(cli.repo))
    # an uninterrupted copy to a local directory: how many packs one copy takes
    clean = cli("copy", "--to-repo", str(tmp_path / "clean"), "--json",
                env={"AGENT_TO_PASSPHRASE_FILE": str(cli.passfile)}, check=False)
    assert clean.code == 10  # no repository there yet: nothing made on the way
    cli("--repo", str(tmp_path / "clean"), "init", "--from-repo", str(cli.repo))
    needed = cli("copy", "--to-repo", str(tmp_path / "clean"), "--json",
                 env={"AGENT_TO_PASSPHRASE_FILE": str(cli.passfile)}).json()["uploaded_packs"]
    assert needed >= 4

    proc = cli.popen("copy", "--to-repo", s3_target.url, "--limit-upload", "1MiB/s", "--json")
    deadline = time.monotonic() + 120
    while len(s3_target.packs()) < needed // 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the copy ended before it could be killed halfway"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = s3_target.packs()
    assert 0 < len(before) < needed

    rerun = _copy(cli, s3_target)
    assert rerun["complete"] and rerun["snapshots_copied"] == 1 and rerun["recovered_packs"] >= 0
    assert len(before) + rerun["uploaded_packs"] <= needed + 2, (len(before), rerun, needed)
    _restores_each_night(cli, on_b, nights, 1, tmp_path)
    _checks_clean(cli, on_b, 1)


def test_three_nights_to_sftp_sharing_keys(cli, nights, sftp_target, tmp_path):
    disk = tmp_path / "disk.img"
    cli("init", "--pack-size", "1")
    ids = [back_up(cli, nights, disk, i)["snapshot_id"] for i in range(3)]
    on_b = _target_cli(cli, sftp_target)
    cli(*on_b, "init", "--from-repo", str(cli.repo), "--share-keys")

    res = _copy(cli, sftp_target)
    assert res["mode"] == "replica" and [c["target_id"] for c in res["copied"]] == ids  # manifests as they are
    assert res["whole_packs"] > 0 and res["uploaded_packs"] == len(sftp_target.packs())
    _restores_each_night(cli, on_b, nights, 3, tmp_path)
    _checks_clean(cli, on_b, 3)
    assert _copy(cli, sftp_target)["uploaded_packs"] == 0
