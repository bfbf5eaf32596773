"""No silent success: a backup whose lock was removed, or whose repository vanished, while it ran
fails loudly and writes no snapshot (a prune may have deleted what it uploaded)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def _slow_backup(cli, tmp_path: Path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(12 << 20))
    cli("init", "--pack-size", "1")
    proc = cli.popen("backup", str(img), "--limit-upload", "1MiB/s")
    locks = cli.repo / "locks"
    deadline = time.monotonic() + 30
    while not (locks.is_dir() and any(locks.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.0)  # some packs uploaded
    assert proc.poll() is None, "the backup finished before the interference; slow it down further"
    return proc


def test_lock_removed_during_the_backup(cli, tmp_path):
    proc = _slow_backup(cli, tmp_path)
    assert cli("unlock", "--remove-all").code == 0
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 13, (out, err)
    assert b"lock was removed while it ran" in err and b"no snapshot was written" in err
    assert b"snapshot saved" not in out + err
    assert cli("snapshots", "--json").json() == []


def test_repository_emptied_during_the_backup(cli, tmp_path):
    proc = _slow_backup(cli, tmp_path)
    keep = tmp_path / "moved"
    shutil.move(cli.repo, keep)  # the bucket emptied, the share unmounted
    cli.repo.mkdir()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, (out, err)
    assert b"internal error" not in err and b"Traceback" not in err
    assert b"disappeared while this run worked" in err, err
    assert sorted(p.name for p in cli.repo.rglob("*") if "snapshots" in p.parts) == []
