"""Every Repository method turns a storage failure into an agent error that says what failed:
nothing above agent.repo ever sees a backend error (docs/architecture.md, errors)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.errors import AgentError, CorruptObject, StorageError
from agent.repo.acks import Acknowledgement
from agent.repo.cache import ObjectCache
from agent.repo.envelope import BlobType
from agent.repo.format import RepoParams
from agent.repo.packs import PackBuilder
from agent.repo.repository import Repository
from agent.repo.runs import RunRecord
from agent.repo.snapshots import Snapshot
from backends.base import Leftover
from backends.errors import BackendError, QuotaExceeded
from backends.local import LocalBackend
from backends.middleware import FaultyBackend, Rule
from crypto.kdf import TEST_PARAMS

OPERATIONS = ("put", "get", "head", "list", "delete", "list_leftovers", "remove_leftover")


@pytest.fixture
def faulty(tmp_path):
    """A repository with one pack, one index segment, one snapshot and one run record, over a
    backend that fails on demand."""
    backend = FaultyBackend(LocalBackend(tmp_path / "repo", create=True))
    repo = Repository.init(backend, b"pw", kdf=TEST_PARAMS, cache=ObjectCache(None),
                           params=RepoParams(pack_size=1 << 20))
    index = repo.load_index()
    builder = PackBuilder()
    data = b"some chunk" * 100
    cid = repo.chunk_id(data)
    builder.add(BlobType.DATA, cid, repo.seal_blob(BlobType.DATA, cid, data), len(data))
    pack = repo.store_pack(builder)
    repo.write_index_segment([pack])
    index.add_pack(*pack)
    snap = Snapshot(time=datetime(2024, 5, 1, tzinfo=UTC),
                    host="h", source={"path": "/dev/x", "kind": "file", "size": 0}, size=0,
                    digest=repo.chunk_list_writer().digest(), chunk_list=[])
    repo.save_snapshot(snap)
    run = repo.save_run(RunRecord(status="failed", reason="test", host="h", source="/dev/x",
                                  started="2024-05-01T00:00:00+00:00", stopped="2024-05-01T00:01:00+00:00"))
    yield repo, backend, pack, snap, run
    backend.inner.close()


def _calls(repo: Repository, pack, snap, run):
    pack_id, size, entries = pack
    e = entries[0]
    return {
        "list_keys": lambda: repo.list_keys(),
        "add_key": lambda: repo.add_key(b"other", kdf=TEST_PARAMS),
        "remove_key": lambda: repo.remove_key("00"),
        "replace_key": lambda: repo.replace_key("00" * 16, repo.key_id),
        "lock": lambda: repo.lock(exclusive=False, command="test"),
        "list_locks": lambda: repo.list_locks(),
        "remove_locks": lambda: repo.remove_locks(all_locks=True),
        "list_packs": lambda: repo.list_packs(),
        "read_pack": lambda: repo.read_pack(pack_id),
        "read_pack_range": lambda: repo.read_pack_range(pack_id, e.offset, e.length),
        "read_pack_header": lambda: repo.read_pack_header(pack_id, size),
        "read_pack_entries": lambda: repo.read_pack_entries(pack_id),
        "delete_pack": lambda: repo.delete_pack(pack_id),
        "store_pack": lambda: repo.store_pack(_one_blob_builder(repo)),
        "list_index_segments": lambda: repo.list_index_segments(),
        "load_index": lambda: repo.load_index(),
        "write_index_segment": lambda: repo.write_index_segment([pack]),
        "delete_index_segment": lambda: repo.delete_index_segment("00" * 32),
        "save_snapshot": lambda: repo.save_snapshot(Snapshot.from_json(snap.to_json(), "x")),
        "list_snapshots": lambda: repo.list_snapshots(),
        "delete_snapshot": lambda: repo.delete_snapshot(snap.id),
        "save_run": lambda: repo.save_run(RunRecord(status="failed", reason="again", host="h", source="/dev/y",
                                                    started="2024-05-02T00:00:00+00:00", stopped="x")),
        "list_runs": lambda: repo.list_runs(),
        "delete_run": lambda: repo.delete_run(run),
        "save_ack": lambda: repo.save_ack(Acknowledgement(snap.id, "2024-05-02T00:00:00+00:00", "h", "u")),
        "list_acks": lambda: repo.list_acks(),
        "list_leftovers": lambda: repo.list_leftovers(0),
        "remove_leftover": lambda: repo.remove_leftover(
            Leftover("temporary file", "data/.tmp-x.0123", 1, 7200.0, "data/.tmp-x.0123")),
    }


def _one_blob_builder(repo: Repository) -> PackBuilder:
    builder = PackBuilder()
    data = b"another chunk" * 50
    cid = repo.chunk_id(data)
    builder.add(BlobType.DATA, cid, repo.seal_blob(BlobType.DATA, cid, data), len(data))
    return builder


METHODS = sorted([
    "list_keys", "add_key", "remove_key", "replace_key", "lock", "list_locks", "remove_locks", "list_packs",
    "read_pack", "read_pack_range", "read_pack_header", "read_pack_entries", "delete_pack", "store_pack",
    "list_index_segments", "load_index", "write_index_segment", "delete_index_segment", "save_snapshot",
    "list_snapshots", "delete_snapshot", "save_run", "list_runs", "delete_run", "list_leftovers", "remove_leftover",
    "save_ack", "list_acks",
])


def test_the_method_list_covers_every_storage_method(faulty):
    repo, _, pack, snap, run = faulty
    assert sorted(_calls(repo, pack, snap, run)) == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_a_failing_storage_becomes_an_agent_error_naming_what_failed(faulty, method):
    repo, backend, pack, snap, run = faulty
    call = _calls(repo, pack, snap, run)[method]
    for op in OPERATIONS:
        backend.add(Rule(op, "raise", times=-1, error=QuotaExceeded("bucket over quota")))
    with pytest.raises(AgentError) as caught:
        call()
    assert not isinstance(caught.value, BackendError)
    assert isinstance(caught.value, StorageError)
    assert "over quota" in str(caught.value)
    assert "full or over quota" in str(caught.value)  # the translation's wording, with its hint
    assert "free space" in caught.value.hint
    assert backend.log, "the call never reached the storage"


@pytest.mark.parametrize("method", ["read_pack", "read_pack_range", "list_snapshots", "load_index"])
def test_a_missing_object_is_reported_as_damage(faulty, method):
    repo, backend, pack, snap, run = faulty
    for op in ("get", "head"):
        backend.add(Rule(op, "not_found", times=-1))
    with pytest.raises(CorruptObject, match="missing or truncated"):
        _calls(repo, pack, snap, run)[method]()


def test_verify_pack_reports_a_missing_pack_but_raises_on_a_storage_failure(faulty):
    """A missing pack is proven damage (check records it); a failing storage proves nothing about
    the pack, so it must not be recorded as damaged (backups would upload its chunks again)."""
    repo, backend, pack, *_ = faulty
    assert repo.verify_pack(pack[0]) == (None, None)
    backend.add(Rule("get", "raise", times=1, error=QuotaExceeded("no")))
    with pytest.raises(StorageError, match="over quota"):
        repo.verify_pack(pack[0])
    backend.add(Rule("get", "not_found", times=1))
    problem, bad = repo.verify_pack(pack[0])
    assert problem is not None and "missing" in problem and bad is None
