"""Property tests and fuzzing of every on-storage format: round trips, and clean errors on junk."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import CorruptObject
from agent.repo.chunklist import DATA, ZERO, ChunkListWriter, decode_group, extents, records
from agent.repo.envelope import BlobType, Envelope
from agent.repo.index import ChunkIndex, decode_segment, encode_segment, load_segment_into
from agent.repo.packs import PackBuilder, read_pack_bytes
from agent.repo.snapshots import Snapshot
from backends.base import read_spool
from crypto.ids import keyed_hasher
from crypto.keys import MasterKey

MASTER = MasterKey.generate()
ENV = Envelope(MASTER, "ab" * 16)

ids = st.binary(min_size=32, max_size=32)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=20))
def test_pack_roundtrip(blobs):
    b = PackBuilder()
    for data in blobs:
        cid = ENV.chunk_id(data)
        b.add(BlobType.DATA, cid, ENV.seal(BlobType.DATA, cid, data), len(data))
    pack = b.finish(ENV)
    pack_id, raw, entries = pack.id, read_spool(pack.file, pack.size), pack.entries
    pack.close()
    parsed = read_pack_bytes(ENV, raw, pack_id)
    assert parsed == entries
    for e, data in zip(parsed, blobs):
        assert ENV.open(BlobType.DATA, e.id, raw[e.offset:e.offset + e.length], e.raw_length) == data


def test_blob_type_and_repo_are_bound():
    data = b"x" * 1000
    cid = ENV.chunk_id(data)
    sealed = ENV.seal(BlobType.DATA, cid, data)
    with pytest.raises(CorruptObject):
        ENV.open(BlobType.META, cid, sealed)
    with pytest.raises(CorruptObject):
        Envelope(MASTER, "cd" * 16).open(BlobType.DATA, cid, sealed)
    with pytest.raises(CorruptObject):
        ENV.open(BlobType.DATA, ENV.chunk_id(b"other"), sealed)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_pack_parser_rejects_junk_cleanly(junk):
    from crypto.ids import object_id

    with pytest.raises(CorruptObject):
        read_pack_bytes(ENV, junk, object_id(junk))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(ids, st.integers(0, 2**31), st.integers(1, 2**31), st.integers(1, 2**31)),
                max_size=50, unique_by=lambda t: t[0]))
def test_index_segment_roundtrip(rows):
    from agent.repo.packs import PackEntry

    packs = [("aa" * 32, 1000, [PackEntry(1, r[0], r[1], r[2], r[3]) for r in rows[:25]]),
             ("bb" * 32, 2000, [PackEntry(2, r[0], r[1], r[2], r[3]) for r in rows[25:]])]
    plain = encode_segment(packs, supersedes=["cc" * 32])
    sup, plist, etab = decode_segment(plain, "x")
    assert sup == ["cc" * 32] and plist == [("aa" * 32, 1000), ("bb" * 32, 2000)]
    idx = ChunkIndex()
    load_segment_into(idx, plist, etab)
    assert len(idx) == len(rows)
    for n, r in enumerate(rows):
        loc = idx.get(r[0])
        assert (loc.pack_id, loc.offset, loc.length, loc.raw_length) == (
            "aa" * 32 if n < 25 else "bb" * 32, r[1], r[2], r[3])
    assert idx.get(os.urandom(32)) is None


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_index_decoder_rejects_junk_cleanly(junk):
    try:
        decode_segment(junk, "x")
    except CorruptObject:
        pass
    else:
        assert junk[:4] == b"AIX1"  # only a well-formed segment decodes


def test_index_merge_keeps_lookups_and_dedups():
    from agent.repo.packs import PackEntry

    idx = ChunkIndex()
    cids = [os.urandom(32) for _ in range(70000)]  # crosses the merge threshold
    idx.add_pack("aa" * 32, 1, [PackEntry(1, c, i, 1, 1) for i, c in enumerate(cids)])
    idx.add_pack("bb" * 32, 1, [PackEntry(1, c, 0, 1, 1) for c in cids[:10]])  # already known: ignored
    idx.freeze()
    assert len(idx) == 70000
    assert idx.get(cids[12345]).offset == 12345 and idx.get(cids[3]).pack_id == "aa" * 32
    assert idx.nbytes / len(idx) <= 80


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just(DATA), st.integers(1, 1 << 22), ids),
                          st.tuples(st.just(ZERO), st.integers(1, 1 << 40), st.just(bytes(32)))), max_size=300))
def test_chunk_list_roundtrip(records):
    w = ChunkListWriter(keyed_hasher(MASTER.id_key))
    for kind, length, cid in records:
        w.add_data(length, cid) if kind == DATA else w.add_zero(length)
    w.finish()
    groups = [decode_group(g, "g") for g in w.ready]
    out = list(extents(groups))
    # adjacent zero runs merge; data records keep their order and sizes
    assert [(e.length, e.id) for e in out if e.kind == DATA] == [(n, c) for k, n, c in records if k == DATA]
    assert sum(e.length for e in out) == sum(r[1] for r in records)
    assert all(not (a.kind == ZERO and b.kind == ZERO) for a, b in zip(out, out[1:]))


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_chunk_list_decoder_rejects_junk(junk):
    try:
        recs = decode_group(junk, "x")
    except CorruptObject:
        return
    assert len(junk) % 41 == 0 and recs == junk and all(kind <= ZERO for kind, _, _ in records([recs]))


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_manifest_parser_rejects_junk(junk):
    with pytest.raises(CorruptObject):
        Snapshot.from_json(junk, "x" * 64)


def test_changed_during_backup_is_optional_in_manifests():
    from datetime import UTC, datetime

    snap = Snapshot(time=datetime(2024, 5, 1, tzinfo=UTC), host="h", source={"path": "/x"}, size=1, digest="d",
                    chunk_list=[])
    assert b"changed_during_backup" not in snap.to_json()  # clean snapshots: manifests as before the field
    assert Snapshot.from_json(snap.to_json(), "x" * 64).changed_during_backup is False
    snap.changed_during_backup = True
    assert Snapshot.from_json(snap.to_json(), "x" * 64).changed_during_backup is True
