"""Leftovers of killed writes, through the real CLI: check reports them, `prune --dry-run` only
counts them, prune removes those older than its safety margin (and stale locks), and every
snapshot still restores byte for byte."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from agent.maintenance.check import run_check
from agent.maintenance.prune import run_prune
from agent.repo.cache import ObjectCache
from agent.repo.repository import Repository
from backends.errors import PermissionDenied
from backends.local import LocalBackend
from backends.middleware import FaultyBackend, Rule
from crypto.kdf import TEST_PARAMS

HOUR = 3600


def _plant(repo: Path, rel: str, size: int, age: float) -> Path:
    """A hidden temporary as a writer killed before its rename leaves it, `age` seconds old."""
    path = repo / rel
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _image(tmp_path: Path, mib: int, seed: int) -> Path:
    img = tmp_path / f"disk{seed}.img"
    img.write_bytes(random.Random(seed).randbytes(mib << 20))
    return img


def _restores(cli, tmp_path: Path, snapshot_id: str, img: Path) -> None:
    out = tmp_path / f"restored-{snapshot_id[:8]}.img"
    cli("restore", snapshot_id, "--to", str(out), "--force")
    assert out.read_bytes() == img.read_bytes()


def test_check_reports_leftovers_and_prune_removes_only_old_ones(cli, tmp_path):
    cli("init", "--pack-size", "1")
    img = _image(tmp_path, 4, seed=1)
    sid = cli("backup", str(img), "--json").json()["snapshot_id"]
    old_pack = _plant(cli.repo, f"data/ab/.tmp-{'ab' * 32}.0123456789ab", 3 << 20, age=2 * HOUR)
    old_index = _plant(cli.repo, f"index/.tmp-{'cd' * 32}.0123456789ab", 1000, age=2 * HOUR)
    fresh = _plant(cli.repo, f"data/ef/.tmp-{'ef' * 32}.0123456789ab", 500, age=60)  # a backup may still write it
    planted = (3 << 20) + 1000

    report = cli("check", "--json").json()
    assert report["ok"] and (report["leftovers"], report["leftover_bytes"]) == (2, planted)
    human = cli("check")
    assert "2 leftover(s) of interrupted writes (3.0 MiB)" in human.err and "`agent prune` removes them" in human.err

    dry = cli("prune", "--dry-run", "--json").json()
    assert dry["dry_run"] and (dry["leftovers"], dry["leftover_bytes"]) == (2, planted)
    assert "would remove 2 leftover(s) of interrupted writes (3.0 MiB)" in cli("prune", "--dry-run").out
    assert old_pack.exists() and old_index.exists() and fresh.exists()

    done = cli("prune", "--json").json()
    assert (done["leftovers"], done["leftover_bytes"], done["stale_locks"]) == (2, planted, 0)
    assert not old_pack.exists() and not old_index.exists()
    assert fresh.exists()  # younger than the margin: prune never races a writer

    report = cli("check", "--json").json()
    assert report["ok"] and report["leftovers"] == 0 and report["warnings"] == []
    assert "leftover" not in cli("check").err
    _restores(cli, tmp_path, sid, img)


def _kill_backup_mid_pack(cli, tmp_path: Path) -> Path:
    """SIGKILL a backup while a pack's hidden temporary exists: the temporary it leaves behind."""
    for attempt in range(5):  # a pack is in flight for a good part of a run; this rarely needs a second try
        proc = cli.popen("backup", str(_image(tmp_path, 96, seed=10 + attempt)))
        try:
            while proc.poll() is None:
                temps = list((cli.repo / "data").glob("*/.tmp-*"))
                if temps:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(30)
                    left = [t for t in temps if t.exists()]
                    if left:
                        return left[0]
                    break
                time.sleep(0.001)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
    raise AssertionError("no backup was caught while writing a pack")


def test_a_backup_killed_while_writing_a_pack_leaves_what_prune_removes(cli, tmp_path):
    cli("init", "--pack-size", "32")
    img = _image(tmp_path, 4, seed=1)
    sid = cli("backup", str(img), "--json").json()["snapshot_id"]
    temp = _kill_backup_mid_pack(cli, tmp_path)
    size = temp.stat().st_size

    report = cli("check", "--json").json()
    assert report["stale_locks"] == 1  # its process is gone: stale at once on this host
    assert report["leftovers"] == 0  # too young: the run may as well be alive elsewhere
    then = time.time() - 2 * HOUR  # as it is an hour later
    os.utime(temp, (then, then))
    report = cli("check", "--json").json()
    assert report["ok"] and (report["leftovers"], report["leftover_bytes"], report["stale_locks"]) == (1, size, 1)
    assert "1 stale lock(s)" in cli("check").err

    dry = cli("prune", "--dry-run", "--json").json()
    assert (dry["leftovers"], dry["leftover_bytes"], dry["stale_locks"]) == (1, size, 1)
    assert temp.exists() and len(list((cli.repo / "locks").iterdir())) == 1

    done = cli("prune", "--json").json()
    assert (done["leftovers"], done["leftover_bytes"], done["stale_locks"]) == (1, size, 1)
    assert not temp.exists() and list((cli.repo / "locks").iterdir()) == []
    assert not list(cli.repo.rglob(".tmp-*"))
    report = cli("check", "--read-data", "--json").json()
    assert report["ok"] and report["warnings"] == [] and (report["leftovers"], report["stale_locks"]) == (0, 0)
    _restores(cli, tmp_path, sid, img)


def test_storage_that_refuses_to_list_leftovers_is_a_warning_not_a_failure(tmp_path):
    backend = FaultyBackend(LocalBackend(tmp_path / "repo"))
    repo = Repository.init(backend, b"pw", kdf=TEST_PARAMS, cache=ObjectCache(None))
    backend.add(Rule("list_leftovers", "raise", times=-1, error=PermissionDenied("ListBucketMultipartUploads")))
    report = run_check(repo)
    assert report.ok and report.leftovers == 0
    [warning] = report.warnings
    assert "permission denied" in warning and "leftovers were not looked for" in warning
    result = run_prune(repo)
    assert result.leftovers == 0 and result.warnings == [warning]
    repo.close()
