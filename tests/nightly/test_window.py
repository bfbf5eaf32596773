"""Backup windows: a run stopped by its deadline (or SIGTERM) leaves no snapshot, shows as incomplete,
survives a prune, and the next run resumes, uploading at most a few packs twice."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta

import pytest

from agent.config.durations import parse_duration
from agent.config.times import next_clock_time, run_deadline
from agent.errors import UsageError
from tests.conftest import AGENT

MiB = 1 << 20
PACK_MIB = 2


def _image(path, mib: int = 40) -> None:
    """Incompressible data with a zero gap, so uploaded bytes track new bytes."""
    with open(path, "wb") as f:
        f.write(os.urandom(mib // 2 * MiB))
        f.write(bytes(4 * MiB))
        f.write(os.urandom(mib // 2 * MiB))


def test_durations_and_clock_times():
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration("45s") == timedelta(seconds=45)
    now = datetime(2024, 5, 1, 23, 0).astimezone()
    assert next_clock_time("06:30", now) == (now + timedelta(hours=7, minutes=30))
    assert next_clock_time("23:30", now) == now + timedelta(minutes=30)
    assert run_deadline("06:30", "1h", now) == now + timedelta(hours=1)
    assert run_deadline(None, None, now) is None
    for bad in ("5", "h", "6:3", "25:00"):
        with pytest.raises(UsageError):
            run_deadline(bad if ":" in bad else None, None if ":" in bad else bad, now)


def test_deadline_stop_then_resume_restores_identically_and_reuploads_little(tmp_path, cli):
    img = tmp_path / "disk.img"
    _image(img)
    cli("init", "--pack-size", str(PACK_MIB))

    first = cli("backup", str(img), "--limit-upload", "4MiB/s", "--max-duration", "3s", "--json", check=False)
    assert first.code == 3, first.err
    part = first.json()
    assert part["complete"] is False and part["snapshot_id"] is None and "deadline" in part["stopped"]
    assert 0 < part["uploaded_bytes"] < 36 * MiB
    assert cli("snapshots", "--json").json()["snapshots"] == []
    runs = cli("snapshots", "--all", "--json").json()["snapshots"]
    assert [r["status"] for r in runs] == ["incomplete"] and "packs" not in runs[0]
    assert cli("restore", "latest", "--to", str(tmp_path / "none.img"), check=False).code == 18

    pruned = cli("prune", "--json").json()  # must not delete what the incomplete run uploaded
    assert pruned["packs_deleted"] == 0 and pruned["bytes_freed"] == 0

    second = cli("backup", str(img), "--json").json()
    assert second["complete"] and second["resumed_runs"] == 1
    out = tmp_path / "restored.img"
    cli("restore", "latest", "--to", str(out))
    assert filecmp.cmp(img, out, shallow=False)

    # the same image backed up in one go, into a fresh repository
    (tmp_path / "oneshot").mkdir()
    once = cli.__class__(tmp_path / "oneshot")
    once("init", "--pack-size", str(PACK_MIB))
    one = once("backup", str(img), "--json").json()
    twice = part["uploaded_bytes"] + second["uploaded_bytes"]
    assert twice <= one["uploaded_bytes"] + 3 * PACK_MIB * MiB, (twice, one["uploaded_bytes"])
    once("restore", "latest", "--to", str(tmp_path / "oneshot.img"))
    assert filecmp.cmp(out, tmp_path / "oneshot.img", shallow=False)

    cli("prune")  # the complete snapshot took the run over: its record goes
    assert [r["status"] for r in cli("snapshots", "--all", "--json").json()["snapshots"]] == ["complete"]
    assert cli("check", "--read-data").code == 0


def test_sigterm_stops_cleanly_and_the_next_run_resumes(tmp_path, cli):
    img = tmp_path / "disk.img"
    _image(img)
    cli("init", "--pack-size", str(PACK_MIB))
    proc = subprocess.Popen([*AGENT, "backup", str(img), "--limit-upload", "4MiB/s", "--json"], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    import json

    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped"] == "stopped on request" and summary["uploaded_bytes"] > 0
    again = cli("backup", str(img), "--json").json()
    assert again["complete"] and again["resumed_runs"] == 1
    assert again["uploaded_bytes"] + summary["uploaded_bytes"] <= 41 * MiB + 3 * PACK_MIB * MiB
    cli("restore", "latest", "--to", str(tmp_path / "r.img"))
    assert filecmp.cmp(img, tmp_path / "r.img", shallow=False)
