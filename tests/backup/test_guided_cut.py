"""Cutting along the parent snapshot's chunks gives exactly the chunks a full cut gives (the same
chunk-list digest), for edits, insertions, holes punched and filled, growth and shrinkage."""

from __future__ import annotations

import os
import random
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backup.run import BackupOptions, run_backup
from agent.repo.cache import ObjectCache
from agent.repo.format import ChunkerParams, RepoParams
from agent.repo.repository import Repository
from agent.restore.run import run_restore
from backends.local import LocalBackend
from crypto.kdf import TEST_PARAMS

KiB = 1 << 10


def _repo(path):
    # small chunks so a few MiB hold many, and block-boundary carry-overs happen often
    params = RepoParams(pack_size=1 << 20, chunker=ChunkerParams(min_size=8 * KiB, avg_size=32 * KiB,
                                                                 max_size=128 * KiB))
    return Repository.init(LocalBackend(path), b"pw", kdf=TEST_PARAMS, cache=ObjectCache(None), params=params)


def _edit(img, rng: random.Random, kind: str) -> None:
    data = bytearray(img.read_bytes())
    at = rng.randrange(0, max(1, len(data) - 64 * KiB))
    if kind == "overwrite":
        data[at:at + 3000] = os.urandom(3000)
    elif kind == "insert":
        data[at:at] = os.urandom(1000)
    elif kind == "delete":
        del data[at:at + 5000]
    elif kind == "zero":
        data[at:at + 200 * KiB] = bytes(len(data[at:at + 200 * KiB]))
    elif kind == "grow":
        data += os.urandom(300 * KiB)
    img.write_bytes(bytes(data))
    if kind == "hole":  # punch a hole (data extent ends early) ...
        with open(img, "r+b") as f:
            os.truncate(f.fileno(), len(data) + (1 << 20))
            f.seek(len(data) + (1 << 20) - 4096)
            f.write(os.urandom(4096))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["overwrite", "insert", "delete", "zero", "grow", "hole"]), min_size=1,
                max_size=4), st.integers(0, 2**32))
def test_guided_cut_equals_full_cut(tmp_path_factory, edits, seed):
    tmp = tmp_path_factory.mktemp("guided")
    rng = random.Random(seed)
    img = tmp / "disk.img"
    img.write_bytes(os.urandom(3 << 20) + bytes(256 * KiB) + os.urandom(2 << 20))
    repo = _repo(tmp / "repo")
    try:
        run_backup(repo, str(img), BackupOptions(host="h"))
        for kind in edits:
            _edit(img, rng, kind)
        guided = run_backup(repo, str(img), BackupOptions(host="h"))      # has a parent: reuses its chunks
        full = run_backup(repo, str(img), BackupOptions(host="fresh"))    # no parent: cuts everything
        snaps = {s.id: s for s in repo.list_snapshots()}
        assert snaps[guided.snapshot_id].digest == snaps[full.snapshot_id].digest
        assert guided.chunks == full.chunks and full.new_bytes == 0
        out = tmp / "out.img"
        run_restore(repo, snaps[guided.snapshot_id], str(out))
        assert out.read_bytes() == img.read_bytes()
    finally:
        repo.close()
        shutil.rmtree(tmp)
