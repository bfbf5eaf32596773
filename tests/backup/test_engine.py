"""Engine behaviour through the repository API: holes, zero runs, sources that change, caching, locks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.backup.run import run_backup
from agent.errors import RepositoryLocked, SourceError
from agent.maintenance.check import run_check
from agent.progress import Advanced
from agent.repo.cache import ObjectCache
from agent.repo.repository import Repository
from agent.restore.run import run_restore
from backends.local import LocalBackend
from backends.middleware import Accounting, AccountingBackend
from crypto.kdf import TEST_PARAMS


def test_holes_are_not_read_and_come_back_as_holes(repo, tmp_path):
    img = tmp_path / "sparse.img"
    with open(img, "wb") as f:
        f.write(os.urandom(3 << 20))
        f.seek(200 << 20)
        f.write(os.urandom(1 << 20))
        f.truncate(300 << 20)
    res = run_backup(repo, str(img))
    assert res.source_bytes == 300 << 20
    assert res.read_bytes <= 5 << 20  # only the data extents were read
    assert res.zero_bytes >= 295 << 20
    out = tmp_path / "out.img"
    run_restore(repo, repo.list_snapshots()[0], str(out))
    assert out.read_bytes() == img.read_bytes()
    assert os.stat(out).st_blocks * 512 < 8 << 20


def test_zero_runs_inside_data_are_not_stored(repo, tmp_path):
    img = tmp_path / "zeros.img"
    img.write_bytes(os.urandom(1 << 20) + bytes(64 << 20) + os.urandom(1 << 20))  # written zeros, not a hole
    res = run_backup(repo, str(img))
    assert res.zero_bytes >= 60 << 20
    assert res.stored_bytes < 4 << 20


def test_source_that_shrinks_mid_read_gives_no_snapshot(repo, tmp_path):
    img = tmp_path / "shrinking.img"
    img.write_bytes(os.urandom(80 << 20))

    def truncate_on_first_progress(ev):
        if isinstance(ev, Advanced) and img.stat().st_size > 1 << 20:
            os.truncate(img, 1 << 20)

    with pytest.raises(SourceError, match="no snapshot"):
        run_backup(repo, str(img), listener=truncate_on_first_progress)
    assert repo.list_snapshots() == []
    assert run_check(repo).ok


def test_second_open_reads_index_and_snapshots_from_cache(tmp_path):
    base = LocalBackend(tmp_path / "repo")
    cache = ObjectCache(tmp_path / "cache")
    repo = Repository.init(base, b"pw", kdf=TEST_PARAMS, cache=cache)
    img = tmp_path / "img"
    img.write_bytes(os.urandom(5 << 20))
    run_backup(repo, str(img))
    acct = Accounting()
    again = Repository.open(AccountingBackend(LocalBackend(tmp_path / "repo"), acct), b"pw", cache=cache)
    again.load_index()
    again.list_snapshots()
    assert acct.snapshot().operations["get"] <= 2  # config and the key file; no index or snapshot downloads


def test_exclusive_lock_conflicts_and_stale_locks_are_ignored(repo):
    shared = repo.lock(exclusive=False, command="backup")
    with pytest.raises(RepositoryLocked, match="backup"):
        repo.lock(exclusive=True, command="prune")
    other = repo.lock(exclusive=False, command="check")  # shared locks coexist
    other.release()
    shared.release()
    # a lock left by a process that died without releasing it is stale on this host
    child = (
        "import os, sys\n"
        "from backends.local import LocalBackend\n"
        "from agent.repo.cache import ObjectCache\n"
        "from agent.repo.repository import Repository\n"
        "r = Repository.open(LocalBackend(sys.argv[1]), b'pw', cache=ObjectCache(None))\n"
        "r.lock(exclusive=True, command='killed')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", child, repo.location], check=True)
    assert len(repo.list_locks()) == 1
    repo.lock(exclusive=True, command="prune").release()  # the dead process's lock does not block
    assert repo.remove_locks() == 1
    assert repo.list_locks() == []


def test_check_reports_missing_and_truncated_packs(repo, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(os.urandom(6 << 20))
    run_backup(repo, str(img))
    packs = sorted((tmp_path / "repo" / "data").rglob("*"), key=lambda p: p.stat().st_size)
    packs = [p for p in packs if p.is_file()]
    packs[-1].unlink()
    with open(packs[-2], "r+b") as f:
        f.truncate(100)
    rep = run_check(repo)
    assert not rep.ok
    assert any("missing from storage" in e for e in rep.errors)
    assert any("has 100 bytes" in e for e in rep.errors)
    assert rep.affected
