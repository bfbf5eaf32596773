"""Fuzzing of the parser of every stored object kind, through the code paths the agent uses.

Each kind gets two properties:

- as stored: arbitrary bytes, and a valid object flipped, cut short, spliced or swapped, put where
  the agent reads that kind, only ever give the typed error the code defines for damage
  (CorruptObject; for the config and key files also RepositoryNotFound, UnsupportedFormat,
  WrongPassphrase), naming the object, or are reported as damaged where reading is lenient;
- after authentication: arbitrary plaintext (random bytes, random JSON of any shape, valid
  documents with fields removed, retyped or out of range, binary headers with huge counts) sealed
  with the test repository's real key, so it gets past the AEAD to the inner parser, either reads
  back well typed or gives that same typed error.

Anything else escaping (ValueError, KeyError, struct.error, UnicodeDecodeError, a zstd error,
MemoryError, RecursionError, OverflowError...) fails the test. A decompression bomb inside an
authenticated object must be refused without allocating what it claims.

Examples per test: AGENT_FUZZ_EXAMPLES (default 200); the long run is in docs/security.md
("Fuzzing").
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import socket
import struct
import tracemalloc
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Iterator

import pytest
import zstandard
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from agent.errors import CorruptObject, RepositoryLocked, RepositoryNotFound, UnsupportedFormat, WrongPassphrase
from agent.repo import layout
from agent.repo.acks import Acknowledgement
from agent.repo.cache import ObjectCache
from agent.repo.chunklist import DATA, RECORD, ZERO, Extent
from agent.repo.damage import DamageRecord
from agent.repo.envelope import MAX_RAW_BLOB, BlobType, Envelope
from agent.repo.format import RepoParams
from agent.repo.index import _MAGIC as INDEX_MAGIC
from agent.repo.index import SEG_RECORD, ChunkIndex, Location, encode_segment
from agent.repo.locks import LockInfo
from agent.repo.packs import HEADER_RECORD, PackBuilder, PackEntry
from agent.repo.repository import Repository
from agent.repo.runs import RunRecord
from agent.repo.snapshots import Snapshot, filter_snapshots, superseded_runs
from backends.base import PutMode
from backends.errors import NotFound
from backends.memory import MemoryBackend
from crypto import aead
from crypto import keys as keyfiles
from crypto.errors import AuthenticationFailed, UnsupportedSuite
from crypto.ids import object_id
from crypto.kdf import TEST_PARAMS, KdfParams, derive

EXAMPLES = int(os.environ.get("AGENT_FUZZ_EXAMPLES", "200"))
#: one repository per test, shared by its examples (each example removes what it stored)
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
PASSPHRASE = b"fuzz passphrase"
# the associated-data kinds repository objects are sealed under (agent.repo.repository, packs, locks)
INDEX_KIND, SNAPSHOT_KIND, RUN_KIND, DAMAGE_KIND, LOCK_KIND, HEADER_KIND = (
    b"index", b"snapshot", b"run", b"damage", b"lock", b"pack-header")

# ---- strategies ---------------------------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(1 << 70), 1 << 70)
                | st.floats() | st.text(max_size=24))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
#: values at and past the edges of what each field may hold
ODD = st.sampled_from([
    None, True, False, 0, -1, 1, 7, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64, -(2**63), 10**31, 10**40,
    0.5, -0.0, math.inf, -math.inf, math.nan, "", "x", "Z", "0" * 64, "zz" * 32, "ab" * 16, "argon2id", "\udcff",
    "2024-05-01", "2024-05-01T02:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
    [], {}, [1, 2], [[0, -1]], [[0, 2**64]], {"a": 1}, ["0" * 64],
])
#: JSON nested past the parser's recursion limit
DEEP = st.builds(lambda opener, n: opener * n, st.sampled_from([b"[", b'{"a":', b'{"version":1,"x":[']),
                 st.integers(1, 4000))


def _paths(doc, prefix=()) -> list[tuple]:
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    out = []
    for k, v in items:
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k))
    return out


@st.composite
def altered(draw, valid):
    """A valid document with a few fields (at any depth) removed, retyped, set to odd values or added."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        op = draw(st.sampled_from(["remove", "retype", "odd", "odd", "add"]))
        if op == "add" or not paths:
            if isinstance(doc, dict):
                doc[draw(st.text(max_size=10))] = draw(JSON)
            continue
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if op == "remove":
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(JSON if op == "retype" else ODD))  # ODD's lists are shared
    return doc


def encode(doc) -> bytes:
    return json.dumps(doc).encode()  # NaN and Infinity included: the decoder accepts them


def documents(valid) -> st.SearchStrategy[bytes]:
    """Plaintext for a JSON object kind: junk, any JSON, the valid document altered, deep nesting."""
    return st.one_of(st.binary(max_size=200), JSON.map(encode), altered(valid).map(encode),
                     altered(valid).map(encode), st.just(encode(valid)), DEEP)


@st.composite
def mutated(draw, valid: bytes):
    """`valid` with bytes flipped, cut off, inserted, deleted or overwritten."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
    return bytes(data)


def stored_bytes(*valid: bytes) -> st.SearchStrategy[bytes]:
    """Bytes for an object as stored: junk, or one of the valid objects damaged."""
    return st.one_of(st.binary(max_size=300), *(mutated(v).filter(lambda b, v=v: b != v) for v in valid))


ids32 = st.binary(min_size=32, max_size=32)
u32 = st.integers(0, 2**32 - 1)

# ---- a small repository with one object of every kind ---------------------------------------------


class World:
    """A test repository holding a pack (a data blob and the chunk-list group of a snapshot), its
    index segment and the snapshot's manifest."""

    def __init__(self, repo: Repository, pack_id: str, data_id: bytes, group: bytes, group_id: bytes, segment: str,
                 snapshot: Snapshot) -> None:
        self.repo, self.pack_id, self.data_id, self.segment, self.snapshot = repo, pack_id, data_id, segment, snapshot
        self.group, self.group_id = group, group_id  # the snapshot's chunk-list group (META blob plaintext)
        self.now = datetime.now(UTC)  # the time of fresh lock records
        self._once: dict = {}

    def __repr__(self) -> str:
        return f"World({self.repo.id[:8]})"

    @property
    def backend(self):
        return self.repo._backend

    def get(self, key: str) -> bytes:
        return self.backend.get(key)

    @contextmanager
    def stored(self, key: str, data: bytes):
        """`data` under `key` for the duration of one example; never replaces a valid object."""
        if any(True for _ in self.backend.list(key)):
            reject()
        self.backend.put(key, data, mode=PutMode.CREATE)
        try:
            yield key
        finally:
            with suppress(NotFound):  # the code under test may remove it (unlock removes unreadable locks)
                self.backend.delete(key)

    @contextmanager
    def replaced(self, key: str, data: bytes):
        old = self.backend.get(key)
        self.backend.put(key, data)
        try:
            yield key
        finally:
            self.backend.put(key, old)

    def valid(self, key, make):
        """A valid object made once per test: a strategy built from it draws alike when hypothesis
        replays or shrinks an example (sealing again would change the nonce, a lock's time its length)."""
        if key not in self._once:
            self._once[key] = make()
        return self._once[key]

    def seal_object(self, kind: bytes, plain: bytes, compressed: bool = False) -> bytes:
        """Plaintext sealed with the repository's real key: it authenticates as `kind`."""
        env = self.repo._envelope
        return env.seal_object(kind, env.compress(plain) if compressed else plain)

    def digest(self, groups: list[bytes]) -> str:
        """The manifest digest (keyed hash of the chunk-list records) of these groups."""
        w = self.repo.chunk_list_writer()
        for g in groups:
            w._digest.update(g)
        return w.digest()


@pytest.fixture
def world() -> Iterator[World]:
    repo = Repository.init(MemoryBackend(), PASSPHRASE, kdf=TEST_PARAMS, cache=ObjectCache(None),
                           params=RepoParams(pack_size=1 << 20))
    while True:  # a chunk id can end a record group (content-defined); this world wants one group
        data = os.urandom(3000)
        data_id = repo.chunk_id(data)
        w = repo.chunk_list_writer()
        w.add_data(len(data), data_id)
        w.add_zero(8192)
        w.finish()
        if len(w.ready) == 1:
            break
    (group,) = w.ready
    group_id = repo.chunk_id(group)
    b = PackBuilder()
    b.add(BlobType.DATA, data_id, repo.seal_blob(BlobType.DATA, data_id, data), len(data))
    b.add(BlobType.META, group_id, repo.seal_blob(BlobType.META, group_id, group), len(group))
    pack_id, size, entries = repo.store_pack(b)
    segment, _ = repo.write_index_segment([(pack_id, size, entries)])
    snap = Snapshot(time=datetime(2024, 5, 1, 2, tzinfo=UTC), host="h", source={"path": "/dev/x", "kind": "file"},
                    size=len(data) + 8192, digest=w.digest(), chunk_list=[group_id.hex()], tags=["nightly"],
                    parent="ab" * 32, stats={"new_bytes": 3000, "stored_bytes": 3100, "resumed_runs": []},
                    agent_version="0.1.0")
    repo.save_snapshot(snap)
    world = World(repo, pack_id, data_id, group, group_id, segment, snap)
    # the valid objects read back: the properties below are not vacuous
    index = repo.load_index()
    assert [e.kind for e in repo.snapshot_extents(index, repo.list_snapshots()[0])] == [DATA, ZERO]
    yield world
    repo.close()


def _valid_run() -> RunRecord:
    return RunRecord(status="incomplete", reason="deadline", host="h", source="/dev/x",
                     started="2024-05-01T02:00:00+00:00", stopped="2024-05-01T05:00:00+00:00", source_bytes=10,
                     done_bytes=5, new_bytes=4, uploaded_bytes=3, agent_version="0.1.0", packs=["cd" * 32])


def _valid_damage(world: World) -> DamageRecord:
    return DamageRecord(packs={world.pack_id: ("fails authentication", frozenset({world.data_id})),
                               "ef" * 32: ("missing", None)},
                        snapshots={world.snapshot.id: [(0, 4096)]}, time="2024-05-02T00:00:00+00:00")


def _valid_lock(world: World) -> dict:
    return {"host": "another-host", "pid": 4242, "exclusive": True, "command": "prune",
            "time": world.now.isoformat()}


# ---- what a well-typed result is -----------------------------------------------------------------


def _is_hex_id(s) -> bool:
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def check_snapshot(s: Snapshot) -> None:
    assert isinstance(s.time, datetime) and s.time.utcoffset() is not None
    assert isinstance(s.host, str) and isinstance(s.source, dict) and isinstance(s.source_path, str)
    assert type(s.size) is int and s.size >= 0
    assert isinstance(s.digest, str) and isinstance(s.agent_version, str)
    assert isinstance(s.chunk_list, list) and all(_is_hex_id(x) for x in s.chunk_list)
    assert isinstance(s.tags, list) and all(isinstance(t, str) for t in s.tags)
    assert s.parent is None or isinstance(s.parent, str)
    assert s.partition_table is None or isinstance(s.partition_table, dict)
    assert isinstance(s.stats, dict)
    for k in ("new_bytes", "stored_bytes"):
        assert s.stats.get(k) is None or isinstance(s.stats[k], int)
    assert all(isinstance(r, str) for r in s.stats.get("resumed_runs", []))
    json.dumps(s.summary())


def check_extents(ext: list[Extent], snap: Snapshot) -> None:
    assert sum(e.length for e in ext) == snap.size
    for e in ext:
        assert type(e.offset) is int and type(e.length) is int and e.kind in (DATA, ZERO) and len(e.id) == 32


def check_index(index: ChunkIndex) -> None:
    for cid, loc in index.entries():
        assert isinstance(cid, bytes) and len(cid) == 32 and isinstance(loc, Location)
        assert _is_hex_id(loc.pack_id)
        assert all(type(v) is int and v >= 0 for v in (loc.type, loc.offset, loc.length, loc.raw_length))
        assert index.get(cid) == loc
    for cid, loc in index.lost.items():
        assert len(cid) == 32 and _is_hex_id(loc.pack_id)


def check_entries(entries: list[PackEntry], data_end: int) -> None:
    for e in entries:
        assert 0 <= e.type < 256 and len(e.id) == 32 and e.offset + e.length <= data_end and e.raw_length >= 0


def _names(damaged: list[tuple[str, str]]) -> list[str]:
    return [n for n, _ in damaged]


# ---- the AEAD layer ------------------------------------------------------------------------------

_AEAD_KEY = os.urandom(32)
_AEAD_SEALED = aead.seal(_AEAD_KEY, b"plaintext of some object", b"ad")


@FUZZ
@given(stored_bytes(_AEAD_SEALED))
def test_aead_open_raises_only_its_own_errors(raw):
    """crypto.aead.open_: only AuthenticationFailed or UnsupportedSuite (the repository maps both)."""
    with pytest.raises((AuthenticationFailed, UnsupportedSuite)):
        aead.open_(_AEAD_KEY, raw, b"ad")


# ---- config --------------------------------------------------------------------------------------

CONFIG_ERRORS = (CorruptObject, RepositoryNotFound, UnsupportedFormat, WrongPassphrase)


def _open(world: World) -> Repository:
    return Repository.open(world.backend, PASSPHRASE, cache=ObjectCache(None))


def check_params(p: RepoParams) -> None:
    c = p.chunker
    assert all(type(v) is int for v in (c.min_size, c.avg_size, c.max_size, p.pack_size, p.compression_level))
    assert 64 <= c.min_size <= c.avg_size <= c.max_size <= 16 << 20 and p.pack_size > 0
    assert isinstance(p.compression, str)
    Envelope(keyfiles.MasterKey.generate(), "ab" * 16, p.compression_level).compress(b"x" * 100)  # usable level


@FUZZ
@given(data=st.data())
def test_config_as_stored(world, data):
    """keyring.unlock -> format.read_plain_config, then open_config (Repository.open)."""
    valid = world.get(layout.CONFIG)
    raw = data.draw(st.one_of(stored_bytes(valid), documents(json.loads(valid))), label="config")
    with world.replaced(layout.CONFIG, raw):
        try:
            repo = _open(world)
        except CONFIG_ERRORS as exc:
            event(f"refused: {type(exc).__name__}")
            return
    event("opened")
    check_params(repo.params)
    assert repo.id == world.repo.id  # only a change that means nothing (whitespace, an unknown field) opens


@FUZZ
@given(data=st.data())
def test_config_sealed_part_after_authentication(world, data):
    """format.open_config / RepoParams.from_dict on any plaintext that authenticates."""
    from agent.repo.format import _config_ad

    doc = json.loads(world.get(layout.CONFIG))
    plain = data.draw(documents(RepoParams().to_dict()), label="sealed config")
    doc["sealed"] = base64.b64encode(aead.seal(world.repo._master.encryption_key, plain,
                                               _config_ad(doc["id"]))).decode()
    with world.replaced(layout.CONFIG, json.dumps(doc).encode()):
        try:
            repo = _open(world)
        except (CorruptObject, UnsupportedFormat) as exc:
            assert "config" in str(exc)
            event(f"refused: {type(exc).__name__}")
            return
    event("opened")
    check_params(repo.params)


# ---- key files -----------------------------------------------------------------------------------


def _capped_derive(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    """The real Argon2id with at most 1 MiB and 2 passes: a fuzzed key file may ask for 4 GiB (allowed);
    the cap keeps memory_kib >= 8 * parallelism true or false as it was."""
    return derive(passphrase, salt, replace(params, memory_kib=min(params.memory_kib, 1024),
                                            time_cost=min(params.time_cost, 2)))


@st.composite
def kdf_altered(draw, valid: dict) -> dict:
    """A key file with KDF parameters and salt at and past their limits (which Argon2 itself refuses)."""
    doc = copy.deepcopy(valid)
    doc["kdf"] = {"algorithm": draw(st.sampled_from(["argon2id", "argon2id", "scrypt"])),
                  "time_cost": draw(st.sampled_from([0, 1, 2, 64, 65, 1.5, "1", math.inf])),
                  "memory_kib": draw(st.sampled_from([0, 7, 8, 9, 64, 1024, 4 << 20, (4 << 20) + 1, math.nan])),
                  "parallelism": draw(st.sampled_from([0, 1, 2, 4, 64, 65]))}
    if draw(st.booleans()):
        doc["salt"] = base64.b64encode(draw(st.binary(max_size=20))).decode()
    return doc


def _without_digest(keyfile: bytes) -> bytes:
    """A key file as agents before the integrity digest wrote it: changed fields then reach the
    parsers behind the digest check (a key file with a digest is damaged as soon as a field changes)."""
    return encode({k: v for k, v in json.loads(keyfile).items() if k != "digest"})


def _key_id(world: World) -> str:
    return world.repo.key_id


@FUZZ
@given(data=st.data())
def test_key_file_as_stored(world, data, monkeypatch):
    """keyring.unlock -> crypto.keys.unwrap (and KdfParams.from_dict); Repository.list_keys -> read_meta."""
    monkeypatch.setattr(keyfiles, "derive", _capped_derive)
    key = layout.key_file(_key_id(world))
    valid = _without_digest(world.get(key))
    raw = data.draw(st.one_of(stored_bytes(valid), documents(json.loads(valid)),
                              kdf_altered(json.loads(valid)).map(encode)), label="key file")
    with world.replaced(key, raw):
        try:
            repo = _open(world)
        except (WrongPassphrase, UnsupportedFormat, CorruptObject) as exc:
            event(f"refused: {type(exc).__name__}")
        else:
            event("opened")
            assert repo.id == world.repo.id
        # listed by a session opened with another key, never an error
        other = world.repo.add_key(b"another", kdf=TEST_PARAMS)
        try:
            listed = _open_with(world, b"another").list_keys()
        finally:
            world.backend.delete(layout.key_file(other))
    assert {k["id"] for k in listed} == {_key_id(world), other}
    for k in listed:
        assert all(k[f] is None or isinstance(k[f], str) for f in ("created", "host", "user", "label"))


def _open_with(world: World, passphrase: bytes) -> Repository:
    return Repository.open(world.backend, passphrase, cache=ObjectCache(None))


@FUZZ
@given(data=st.data())
def test_key_file_master_after_authentication(world, data):
    """crypto.keys.unwrap -> MasterKey.from_bytes on any plaintext sealed under the real key-wrapping key."""
    key = layout.key_file(_key_id(world))
    doc = json.loads(_without_digest(world.get(key)))
    salt = base64.b64decode(doc["salt"])
    kek = derive(PASSPHRASE, salt, KdfParams.from_dict(doc["kdf"]))
    master = world.repo._master.to_bytes()
    plain = data.draw(st.one_of(st.binary(max_size=100), mutated(master), st.just(master)), label="master key")
    doc["data"] = base64.b64encode(aead.seal(kek, plain, b"agent key file v1\x00" + world.repo.id.encode())).decode()
    with world.replaced(key, json.dumps(doc).encode()):
        try:
            repo = _open(world)
        except (UnsupportedFormat, CorruptObject) as exc:
            event(f"refused: {type(exc).__name__}")
            return
    event("opened")
    assert repo.params == world.repo.params


# ---- index segments ------------------------------------------------------------------------------


def _index_outcome(world: World, name: str) -> None:
    """Lenient load_index reports the segment by name or loads it; strict raises CorruptObject naming it."""
    damaged: list[tuple[str, str]] = []
    index = world.repo.load_index(damaged)
    check_index(index)
    assert set(_names(damaged)) <= {name}
    event("segment reported damaged" if damaged else "segment loaded")
    if damaged:
        with pytest.raises(CorruptObject, match=name[:16]):
            world.repo.load_index()
    else:
        check_index(world.repo.load_index())


@FUZZ
@given(data=st.data())
def test_index_segment_as_stored(world, data):
    """Repository.load_index: name check, Envelope.open_object, Envelope.decompress, index.decode_segment."""
    valid = world.get(layout.index_segment(world.segment))
    swapped = world.valid("snapshot as index", lambda: world.seal_object(SNAPSHOT_KIND, b"{}", True))
    raw = data.draw(stored_bytes(valid, swapped), label="segment")
    name = object_id(raw) if data.draw(st.booleans(), label="named by content") else os.urandom(32).hex()
    with world.stored(layout.index_segment(name), raw):
        damaged: list[tuple[str, str]] = []
        check_index(world.repo.load_index(damaged))
        assert _names(damaged) == [name]
        with pytest.raises(CorruptObject, match=name[:16]):
            world.repo.load_index()


@st.composite
def segment_plaintext(draw, world: World):
    """Index segment plaintext: junk, a header with any counts, well-formed tables with any values, valid."""
    kind = draw(st.sampled_from(["junk", "header", "tables", "valid"]))
    if kind == "junk":
        return draw(st.binary(max_size=200))
    if kind == "header":
        return INDEX_MAGIC + struct.pack("<III", draw(u32), draw(u32), draw(u32)) + draw(st.binary(max_size=200))
    if kind == "tables":
        sup = draw(st.lists(st.one_of(ids32, st.just(bytes.fromhex(world.segment))), max_size=2))
        packs = draw(st.lists(st.tuples(st.one_of(ids32, st.just(bytes.fromhex(world.pack_id))),
                                        st.integers(0, 2**64 - 1)), max_size=3))
        recs = draw(st.lists(st.tuples(st.one_of(ids32, st.just(world.group_id)), st.integers(0, max(len(packs), 1)),
                                       u32, u32, u32, st.integers(0, 255)), max_size=6))
        counts = (len(sup), len(packs), len(recs))
        if draw(st.booleans()):
            counts = draw(st.tuples(u32, u32, u32))
        return (INDEX_MAGIC + struct.pack("<III", *counts) + b"".join(sup)
                + b"".join(struct.pack("<32sQ", *p) for p in packs) + b"".join(SEG_RECORD.pack(*r) for r in recs))
    entries = [PackEntry(draw(st.integers(0, 255)), draw(ids32), draw(u32), draw(u32), draw(u32))
               for _ in range(draw(st.integers(0, 4)))]
    plain = encode_segment([(world.pack_id, 100, entries)], draw(st.lists(st.just(world.segment), max_size=1)))
    return draw(st.one_of(st.just(plain), mutated(plain)))


@FUZZ
@given(data=st.data())
def test_index_segment_after_authentication(world, data):
    """index.decode_segment / drop_damaged / load_segments_into on any plaintext that authenticates."""
    plain = data.draw(segment_plaintext(world), label="segment plaintext")
    sealed = world.seal_object(INDEX_KIND, plain, compressed=not data.draw(st.booleans(), label="uncompressed"))
    name = object_id(sealed)
    damage = data.draw(st.booleans(), label="with a damage record")
    with world.stored(layout.index_segment(name), sealed):
        if damage:
            world.repo.save_damage(_valid_damage(world), [])
        try:
            _index_outcome(world, name)
        finally:
            for n in world.repo.load_damage()[1]:
                world.backend.delete(layout.damage(n))


# ---- packs ---------------------------------------------------------------------------------------


def _pack_outcome(world: World, pack_id: str, size: int) -> None:
    """Repository.read_pack_header (packs.header_location, parse_header), read_pack_entries
    (packs.read_pack_bytes) and verify_pack: entries or CorruptObject naming the pack."""
    for read in (lambda: world.repo.read_pack_header(pack_id, size),
                 lambda: world.repo.read_pack_entries(pack_id)[1]):
        try:
            entries = read()
        except CorruptObject as exc:
            assert pack_id[:16] in str(exc)
            event("header refused")
        else:
            event("header read")
            check_entries(entries, size)
    problem, bad = world.repo.verify_pack(pack_id)
    assert (problem is None and bad is None) or isinstance(problem, str)
    assert bad is None or all(len(b) == 32 for b in bad)


@FUZZ
@given(data=st.data())
def test_pack_as_stored(world, data):
    valid = world.get(layout.pack(world.pack_id))
    raw = data.draw(st.one_of(st.binary(max_size=300), mutated(valid), mutated(valid[-200:]),
                              st.binary(max_size=60).map(lambda b: b + struct.pack("<I", 2**32 - 1))), label="pack")
    pack_id = object_id(raw) if data.draw(st.booleans(), label="named by content") else os.urandom(32).hex()
    with world.stored(layout.pack(pack_id), raw):
        _pack_outcome(world, pack_id, len(raw))
        if pack_id != object_id(raw):
            with pytest.raises(CorruptObject, match=pack_id[:16]):
                world.repo.read_pack_entries(pack_id)


@st.composite
def header_plaintext(draw, blobs: list[PackEntry], data_end: int):
    """Pack header plaintext: junk, any count, records with any values, or the valid table damaged."""
    kind = draw(st.sampled_from(["junk", "count", "records", "valid"]))
    if kind == "junk":
        return draw(st.binary(max_size=200))
    if kind == "count":
        return b"APH1" + struct.pack("<I", draw(u32)) + draw(st.binary(max_size=200))
    if kind == "records":
        recs = draw(st.lists(st.tuples(st.integers(0, 255), ids32, st.one_of(u32, st.integers(0, data_end)),
                                       st.one_of(u32, st.integers(0, data_end)), u32), max_size=6))
        count = len(recs) if draw(st.booleans()) else draw(u32)
        return b"APH1" + struct.pack("<I", count) + b"".join(HEADER_RECORD.pack(*r) for r in recs)
    plain = b"APH1" + struct.pack("<I", len(blobs)) + b"".join(
        HEADER_RECORD.pack(e.type, e.id, e.offset, e.length, e.raw_length) for e in blobs)
    return draw(st.one_of(st.just(plain), mutated(plain)))


@FUZZ
@given(data=st.data())
def test_pack_header_after_authentication(world, data):
    """packs.parse_header on any plaintext sealed as a pack header, after real blobs."""
    valid = world.get(layout.pack(world.pack_id))
    entries = world.repo.read_pack_header(world.pack_id, len(valid))
    data_end = max(e.offset + e.length for e in entries)
    plain = data.draw(header_plaintext(entries, data_end), label="header plaintext")
    sealed = world.seal_object(HEADER_KIND, plain)
    raw = valid[:data_end] + sealed + struct.pack("<I", len(sealed))
    pack_id = object_id(raw)
    with world.stored(layout.pack(pack_id), raw):
        _pack_outcome(world, pack_id, len(raw))


# ---- blobs and chunk lists -----------------------------------------------------------------------


def _seal_blob_body(world: World, btype: BlobType, cid: bytes, body: bytes) -> bytes:
    """A blob whose body (encoding byte + payload) is chosen freely, sealed as the envelope seals one."""
    env = world.repo._envelope
    return aead.seal(env._master.encryption_key, body, env._ad(btype, cid))


def _zstd_claiming(size: int, payload: bytes = b"x" * 100) -> bytes:
    """A zstd frame whose header declares `size` bytes of content (8-byte field), holding `payload`."""
    frame = zstandard.ZstdCompressor().compress(payload)
    assert frame[4] == 0x20  # single segment, 1-byte content size
    return frame[:4] + bytes((0xE0,)) + struct.pack("<Q", size) + frame[6:]


def _zstd_unsized(total: int) -> bytes:
    """A zstd frame of `total` zero bytes whose header does not say how large it is."""
    co = zstandard.ZstdCompressor().compressobj()
    piece = bytes(1 << 20)
    return b"".join(co.compress(piece[:min(1 << 20, total - i)]) for i in range(0, total, 1 << 20)) + co.flush()


@st.composite
def blob_bodies(draw, plain: bytes):
    kind = draw(st.sampled_from(["raw", "zstd", "claim", "unsized", "junk", "encoding"]))
    if kind == "raw":
        return b"\x00" + draw(st.one_of(st.just(plain), mutated(plain)))
    if kind == "zstd":
        return b"\x01" + draw(st.one_of(st.just(zstandard.ZstdCompressor().compress(plain)),
                                        mutated(zstandard.ZstdCompressor().compress(plain))))
    if kind == "claim":
        return b"\x01" + _zstd_claiming(draw(st.sampled_from([0, 1, 99, 101, 1 << 20, 1 << 36, 2**64 - 2])))
    if kind == "unsized":
        return b"\x01" + _zstd_unsized(draw(st.sampled_from([1, 4096, 1 << 20])))
    if kind == "junk":
        return b"\x01" + draw(st.binary(max_size=100))
    return bytes((draw(st.integers(2, 255)),)) + draw(st.binary(max_size=50))


@FUZZ
@given(data=st.data())
def test_blob_after_authentication(world, data):
    """envelope.Envelope.open (decompress, length and id checks) on any body that authenticates."""
    plain = data.draw(st.binary(max_size=200), label="plaintext")
    btype = data.draw(st.sampled_from(BlobType), label="type")
    cid = world.repo.chunk_id(plain)
    body = data.draw(blob_bodies(plain), label="body")
    raw_length = data.draw(st.one_of(st.just(len(plain)), u32), label="raw length")
    try:
        out = world.repo.open_blob(btype, cid, _seal_blob_body(world, btype, cid, body), raw_length)
    except CorruptObject as exc:
        assert cid.hex()[:16] in str(exc)
        event("blob refused")
    else:
        event("blob opened")
        assert out == plain and raw_length == len(plain)


def _store_chunk_list_group(world: World, gid: bytes, sealed: bytes, raw_length: int) -> tuple[str, str]:
    b = PackBuilder()
    b.add(BlobType.META, gid, sealed, raw_length)
    pack_id, size, entries = world.repo.store_pack(b)
    segment, _ = world.repo.write_index_segment([(pack_id, size, entries)])
    return pack_id, segment


@contextmanager
def _group_in_a_pack(world: World, gid: bytes, sealed: bytes, raw_length: int):
    pack_id, segment = _store_chunk_list_group(world, gid, sealed, raw_length)
    try:
        yield
    finally:
        world.repo.delete_pack(pack_id)
        world.repo.delete_index_segment(segment)


@FUZZ
@given(data=st.data())
def test_chunk_list_blob_as_stored(world, data):
    """Repository.load_chunk_list -> open_blob on a damaged META blob: CorruptObject naming it."""
    group = world.group + RECORD.pack(ZERO, 4096, bytes(32))
    gid = world.repo.chunk_id(group)
    valid = world.valid("group", lambda: world.repo.seal_blob(BlobType.META, gid, group))
    sealed = data.draw(stored_bytes(valid), label="sealed group")
    if sealed == valid:
        reject()
    snap = replace(world.snapshot, chunk_list=[gid.hex()], digest=world.digest([group]), size=len(group))
    with _group_in_a_pack(world, gid, sealed, len(group)):
        index = world.repo.load_index()
        with pytest.raises(CorruptObject, match=gid.hex()[:16]):
            list(world.repo.snapshot_extents(index, snap))


@st.composite
def group_plaintext(draw, world: World):
    kind = draw(st.sampled_from(["junk", "records", "valid"]))
    if kind == "junk":
        return draw(st.binary(max_size=200))
    if kind == "records":
        recs = draw(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**64 - 1),
                                       st.one_of(ids32, st.just(world.data_id), st.just(bytes(32)))), max_size=8))
        return b"".join(RECORD.pack(*r) for r in recs)
    return draw(st.one_of(st.just(world.group), mutated(world.group)))


@FUZZ
@given(data=st.data())
def test_chunk_list_group_after_authentication(world, data):
    """chunklist.decode_group / records / extents via Repository.load_chunk_list and snapshot_extents."""
    group = data.draw(group_plaintext(world), label="group")
    gid = world.repo.chunk_id(group)
    size = sum(length for kind, length, _ in RECORD.iter_unpack(group)) if len(group) % RECORD.size == 0 else 0
    snap = replace(world.snapshot, chunk_list=[gid.hex()], digest=world.digest([group]),
                   size=data.draw(st.one_of(st.just(size), st.integers(0, 2**64)), label="size"))
    if data.draw(st.booleans(), label="wrong digest"):
        snap.digest = os.urandom(32).hex()
    with _group_in_a_pack(world, gid, world.repo.seal_blob(BlobType.META, gid, group), len(group)):
        index = world.repo.load_index()
        try:
            ext = list(world.repo.snapshot_extents(index, snap))
        except CorruptObject as exc:
            assert gid.hex()[:16] in str(exc) or snap.id[:8] in str(exc)
            event("chunk list refused")
            return
    event("chunk list read")
    check_extents(ext, snap)


# ---- snapshot manifests --------------------------------------------------------------------------


def _snapshots_outcome(world: World, name: str) -> None:
    """Repository.list_snapshots (lenient and strict), then what reads a listed manifest."""
    damaged: list[tuple[str, str]] = []
    snaps = world.repo.list_snapshots(damaged)
    assert set(_names(damaged)) <= {name} and len(snaps) + len(damaged) == 2
    event("manifest reported damaged" if damaged else "manifest read")
    for s in snaps:
        check_snapshot(s)
    filter_snapshots(snaps, host="h", tags=["nightly"])
    assert all(isinstance(r, str) for r in superseded_runs(snaps))
    if damaged:
        with pytest.raises(CorruptObject, match=name[:8]):
            world.repo.list_snapshots()
    index = world.repo.load_index()
    for s in snaps:
        try:
            check_extents(list(world.repo.snapshot_extents(index, s)), s)
        except CorruptObject as exc:
            assert s.id[:8] in str(exc) or "blob" in str(exc)


@FUZZ
@given(data=st.data())
def test_snapshot_as_stored(world, data):
    valid = world.get(layout.snapshot(world.snapshot.id))
    swapped = world.valid("index as snapshot", lambda: world.seal_object(INDEX_KIND, b"", True))
    raw = data.draw(stored_bytes(valid, swapped), label="manifest")
    name = object_id(raw) if data.draw(st.booleans(), label="named by content") else os.urandom(32).hex()
    with world.stored(layout.snapshot(name), raw):
        _snapshots_outcome(world, name)
        assert world.repo.list_snapshots([])[0].id == world.snapshot.id


@FUZZ
@given(data=st.data())
def test_snapshot_after_authentication(world, data):
    """snapshots.Snapshot.from_json (after Envelope.decompress) on any plaintext that authenticates."""
    plain = data.draw(documents(json.loads(world.snapshot.to_json())), label="manifest plaintext")
    sealed = world.seal_object(SNAPSHOT_KIND, plain, compressed=not data.draw(st.booleans(), label="uncompressed"))
    with world.stored(layout.snapshot(object_id(sealed)), sealed):
        _snapshots_outcome(world, object_id(sealed))


# ---- run records ---------------------------------------------------------------------------------


def _runs_outcome(world: World, name: str) -> None:
    damaged: list[str] = []
    runs = world.repo.list_runs(damaged)
    assert damaged in ([], [name]) and len(runs) + len(damaged) == 1
    event("run record reported damaged" if damaged else "run record read")
    for n, r in runs:
        assert n == name and isinstance(r, RunRecord)
        for f in ("status", "reason", "host", "source", "started", "stopped", "agent_version"):
            assert isinstance(getattr(r, f), str)
        for f in ("source_bytes", "done_bytes", "new_bytes", "uploaded_bytes", "version"):
            assert type(getattr(r, f)) is int
        assert all(isinstance(p, str) for p in r.packs)
        json.dumps(r.summary())


@FUZZ
@given(data=st.data())
def test_run_record_as_stored(world, data):
    valid = world.valid("run", lambda: world.seal_object(RUN_KIND, _valid_run().to_json()))
    raw = data.draw(stored_bytes(valid), label="run record")
    with world.stored(layout.run("12" * 32), raw):
        _runs_outcome(world, "12" * 32)


@FUZZ
@given(data=st.data())
def test_run_record_after_authentication(world, data):
    """runs.RunRecord.from_json via Repository.list_runs."""
    plain = data.draw(documents(json.loads(_valid_run().to_json())), label="run record plaintext")
    with world.stored(layout.run("12" * 32), world.seal_object(RUN_KIND, plain)):
        _runs_outcome(world, "12" * 32)


# ---- damage records ------------------------------------------------------------------------------


def _damage_outcome(world: World, name: str) -> None:
    damaged: list[tuple[str, str]] = []
    record, names = world.repo.load_damage(damaged)
    assert names == [name] and _names(damaged) in ([], [name])
    event("damage record reported damaged" if damaged else "damage record read")
    assert isinstance(record.time, str)
    for pack_id, (why, blobs) in record.packs.items():
        assert _is_hex_id(pack_id) and isinstance(why, str)
        assert blobs is None or all(isinstance(b, bytes) and len(b) == 32 for b in blobs)
    for snap_id, ranges in record.snapshots.items():
        assert _is_hex_id(snap_id) and all(type(o) is int and type(n) is int for o, n in ranges)
    check_index(world.repo.load_index(damage=record))


@FUZZ
@given(data=st.data())
def test_damage_record_as_stored(world, data):
    valid = world.valid("damage", lambda: world.seal_object(DAMAGE_KIND, _valid_damage(world).to_json()))
    raw = data.draw(stored_bytes(valid), label="damage record")
    name = object_id(raw) if data.draw(st.booleans(), label="named by content") else os.urandom(32).hex()
    with world.stored(layout.damage(name), raw):
        _damage_outcome(world, name)
        assert world.repo.load_damage()[0].packs == {}


@FUZZ
@given(data=st.data())
def test_damage_record_after_authentication(world, data):
    """damage.DamageRecord.from_json via Repository.load_damage, then load_index(damage=...)."""
    plain = data.draw(documents(json.loads(_valid_damage(world).to_json())), label="damage record plaintext")
    sealed = world.seal_object(DAMAGE_KIND, plain)
    with world.stored(layout.damage(object_id(sealed)), sealed):
        _damage_outcome(world, object_id(sealed))


# ---- acknowledgements of suspicious nights -------------------------------------------------------

ACK_KIND = b"ack"


def _valid_ack() -> Acknowledgement:
    return Acknowledgement("ab" * 32, "2024-05-02T01:00:00+00:00", "host", "admin", "looked at it")


def _acks_outcome(world: World, name: str) -> None:
    """Repository.list_acks: an ack is read with string fields, or reported damaged (never raised)."""
    damaged: list[tuple[str, str]] = []
    acks = world.repo.list_acks(damaged)
    assert len(acks) + len(damaged) == 1
    event("ack reported damaged" if damaged else "ack read")
    for n, ack in acks:
        assert n == name and _is_hex_id(ack.snapshot)
        assert all(isinstance(getattr(ack, f), str) for f in ("time", "host", "user", "note"))


@FUZZ
@given(data=st.data())
def test_ack_as_stored(world, data):
    valid = world.valid("ack", lambda: world.seal_object(ACK_KIND, _valid_ack().to_json()))
    raw = data.draw(stored_bytes(valid), label="acknowledgement")
    name = object_id(raw) if data.draw(st.booleans(), label="named by content") else os.urandom(32).hex()
    with world.stored(layout.ack(name), raw):
        _acks_outcome(world, name)


@FUZZ
@given(data=st.data())
def test_ack_after_authentication(world, data):
    """acks.Acknowledgement.from_json via Repository.list_acks."""
    plain = data.draw(documents(json.loads(_valid_ack().to_json())), label="acknowledgement plaintext")
    sealed = world.seal_object(ACK_KIND, plain)
    with world.stored(layout.ack(object_id(sealed)), sealed):
        _acks_outcome(world, object_id(sealed))


# ---- locks ---------------------------------------------------------------------------------------


def _locks_outcome(world: World) -> None:
    """Repository.list_locks, remove_locks (LockInfo.is_stale) and lock (a conflict or not)."""
    locks = world.repo.list_locks()
    event("lock read" if locks else "lock skipped")
    for info in locks:
        assert isinstance(info, LockInfo) and isinstance(info.host, str) and isinstance(info.command, str)
        assert type(info.pid) is int and isinstance(info.exclusive, bool)
        assert isinstance(info.time, datetime) and info.time.utcoffset() is not None
    world.repo.remove_locks()
    try:
        world.repo.lock(exclusive=True, command="fuzz").release()
    except RepositoryLocked:
        pass


@FUZZ
@given(data=st.data())
def test_lock_as_stored(world, data):
    valid = world.valid("lock", lambda: world.seal_object(LOCK_KIND, encode(_valid_lock(world))))
    raw = data.draw(stored_bytes(valid), label="lock")
    with world.stored(layout.lock("34" * 16), raw):
        assert world.repo.list_locks() == []  # unreadable lock records block nobody
        _locks_outcome(world)


@FUZZ
@given(data=st.data())
def test_lock_after_authentication(world, data):
    """locks.list_locks (the lock record parser) on any plaintext that authenticates."""
    plain = data.draw(documents(_valid_lock(world)), label="lock plaintext")
    with world.stored(layout.lock("34" * 16), world.seal_object(LOCK_KIND, plain)):
        _locks_outcome(world)


# ---- decompression bombs -------------------------------------------------------------------------


@contextmanager
def _peak_allocation(limit: int):
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"{peak} bytes allocated"


@pytest.mark.parametrize("claim", [2 << 20, 1 << 36, 2**64 - 2])
def test_a_metadata_frame_claiming_more_than_the_limit_is_refused_before_allocating(claim):
    """zstandard allocates a frame's declared content size up front, whatever max_output_size says
    (a 64 GiB claim was a MemoryError, a 2 MiB one was allocated under a 1 MiB limit)."""
    env = Envelope(keyfiles.MasterKey.generate(), "ab" * 16)
    with _peak_allocation(1 << 20), pytest.raises(CorruptObject, match="snapshot 12345678"):
        env.decompress(_zstd_claiming(claim), limit=1 << 20, name="snapshot 12345678")


def test_a_metadata_frame_expanding_past_the_limit_stops_at_the_limit():
    env = Envelope(keyfiles.MasterKey.generate(), "ab" * 16)
    bomb = _zstd_unsized(64 << 20)
    assert len(bomb) < 4096
    with _peak_allocation(2 << 20), pytest.raises(CorruptObject, match="index segment"):
        env.decompress(bomb, limit=1 << 20, name="index segment 0123")


def test_an_authenticated_snapshot_and_index_segment_claiming_terabytes_are_reported_as_damaged(world):
    for kind, key, loader in ((SNAPSHOT_KIND, layout.snapshot, lambda d: world.repo.list_snapshots(d)),
                              (INDEX_KIND, layout.index_segment, lambda d: world.repo.load_index(d))):
        sealed = world.seal_object(kind, _zstd_claiming(1 << 40))
        name = object_id(sealed)
        with world.stored(key(name), sealed), _peak_allocation(1 << 20):
            damaged: list[tuple[str, str]] = []
            loader(damaged)
            assert _names(damaged) == [name]


@pytest.mark.parametrize("raw_length", [100, 2**32 - 1])
def test_a_blob_inflates_at_most_to_its_length_and_never_past_the_blob_limit(world, raw_length):
    """A blob's raw length comes from an authenticated header or index row (up to 4 GiB); what it
    inflates to is bounded by it and by MAX_RAW_BLOB (chunks are at most 16 MiB)."""
    cid = os.urandom(32)
    for body in (_zstd_claiming(1 << 40), _zstd_claiming(raw_length), _zstd_unsized(MAX_RAW_BLOB + (1 << 20))):
        sealed = _seal_blob_body(world, BlobType.DATA, cid, b"\x01" + body)
        with _peak_allocation(MAX_RAW_BLOB + (1 << 20)), pytest.raises(CorruptObject, match=cid.hex()[:16]):
            world.repo.open_blob(BlobType.DATA, cid, sealed, raw_length)


def test_a_fresh_lock_read_back_blocks_and_an_old_one_is_stale(world):
    """The lock parser accepts what Lock writes (the fuzz above is not vacuous)."""
    doc = _valid_lock(world)
    with world.stored(layout.lock("34" * 16), world.seal_object(LOCK_KIND, encode(doc))):
        (info,) = world.repo.list_locks()
        assert info.pid == 4242 and info.exclusive
        with pytest.raises(RepositoryLocked):
            world.repo.lock(exclusive=False, command="backup")
    doc["time"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    with world.stored(layout.lock("34" * 16), world.seal_object(LOCK_KIND, encode(doc))):
        assert world.repo.remove_locks() == 1


# ---- examples the properties above found, or that reading the parsers did, kept as plain tests -----


@pytest.mark.parametrize("change", [
    {"id": 10**31}, {"id": "g" * 32}, {"version": math.inf}, {"version": "1", "id": ["ab"] * 32},
], ids=["int-id", "non-hex-id", "infinite-version", "list-id"])
def test_config_regressions(world, change):
    doc = {**json.loads(world.get(layout.CONFIG)), **change}
    with world.replaced(layout.CONFIG, encode(doc)), pytest.raises(CONFIG_ERRORS):
        _open(world)


@pytest.mark.parametrize("kdf,salt", [
    ({"algorithm": "argon2id", "time_cost": 1, "memory_kib": 8, "parallelism": 2}, os.urandom(16)),
    ({"algorithm": "argon2id", "time_cost": 1, "memory_kib": 8, "parallelism": 1}, b"short"),
    ({"algorithm": "argon2id", "time_cost": math.inf, "memory_kib": 8, "parallelism": 1}, os.urandom(16)),
], ids=["memory-under-8-KiB-a-lane", "salt-under-8-bytes", "infinite-time-cost"])
def test_key_file_regressions(world, kdf, salt):
    key = layout.key_file(_key_id(world))
    doc = {**json.loads(_without_digest(world.get(key))), "kdf": kdf, "salt": base64.b64encode(salt).decode()}
    with world.replaced(key, encode(doc)), pytest.raises(UnsupportedFormat, match="can be read"):
        _open(world)


@pytest.mark.parametrize("change", [
    {"time": "2024-05-01T02:00:00"}, {"time": "0001-01-01T00:00:00+14:00"}, {"chunk_list": ["zz" * 32]},
    {"tags": [1]}, {"size": math.inf}, {"stats": {"resumed_runs": 5}}, {"source": {"path": None}},
], ids=["naive-time", "time-before-year-1-in-utc", "non-hex-chunk-list", "int-tag", "infinite-size",
        "int-resumed-runs", "null-source-path"])
def test_snapshot_regressions(world, change):
    doc = {**json.loads(world.snapshot.to_json()), **change}
    sealed = world.seal_object(SNAPSHOT_KIND, encode(doc), compressed=True)
    with world.stored(layout.snapshot(object_id(sealed)), sealed):
        damaged: list[tuple[str, str]] = []
        assert [s.id for s in world.repo.list_snapshots(damaged)] == [world.snapshot.id]
        assert damaged == [(object_id(sealed), f"snapshot {object_id(sealed)[:8]} has a malformed manifest")]


@pytest.mark.parametrize("change", [
    {"time": "2024-05-01T02:00:00"}, {"time": "0001-01-01T00:00:00+14:00"}, {"pid": 2**40}, {"pid": 0},
    {"pid": math.inf}, {"time": 5},
], ids=["naive-time", "time-before-year-1-in-utc", "huge-pid", "pid-0", "infinite-pid", "int-time"])
def test_lock_regressions(world, change):
    doc = {**_valid_lock(world), "host": socket.gethostname(), **change}
    with world.stored(layout.lock("34" * 16), world.seal_object(LOCK_KIND, encode(doc))):
        assert world.repo.list_locks() == []
        assert world.repo.remove_locks() == 1  # unreadable: it blocks no one, and unlock removes it
        world.repo.lock(exclusive=True, command="fuzz").release()
