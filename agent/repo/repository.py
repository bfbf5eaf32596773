"""Repository: opens the format over a backend for the engine (backup, restore, maintenance).

It owns the backend, the master key and the envelope; upper layers get blobs, packs, index,
chunk lists and snapshots, never keys or storage. Every method turns backend errors into agent
errors (agent.repo.storage), with messages that say what to do.
"""

from __future__ import annotations

import hmac
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Callable, Iterable, Iterator, Sequence

import pyfastcdc

from agent.errors import CorruptObject, UsageError
from agent.repo import layout
from agent.repo.acks import Acknowledgement
from agent.repo.cache import ObjectCache
from agent.repo.chunker import make_chunker
from agent.repo.chunklist import ChunkListWriter, Extent, decode_group, extents, records
from agent.repo.damage import DamageRecord
from agent.repo.envelope import BlobType, Envelope
from agent.repo.format import RepoParams, open_config
from agent.repo.holds import HoldRecord
from agent.repo.index import ChunkIndex, decode_segment, drop_damaged, encode_segment, load_segments_into
from agent.repo.keyring import Unlocked, create, damaged_keys, key_meta, unlock
from agent.repo.locks import Lock, LockInfo, list_locks, remove_stale
from agent.repo.packs import PackBuilder, PackEntry, SpooledPack, header_location, parse_header, read_pack_bytes
from agent.repo.runs import RunRecord
from agent.repo.snapshots import Snapshot
from agent.repo.storage import storage_error, translated
from backends.base import Backend, Capabilities, Leftover, LockPolicy, ObjectInfo, PutMode
from backends.errors import AlreadyExists, BackendError, NotFound, PermissionDenied
from crypto import keys as keyfiles
from crypto.errors import KeyFileDamaged, UnsupportedSuite
from crypto.ids import keyed_hasher, object_id
from crypto.kdf import KdfParams
from crypto.keys import MasterKey

_INDEX_KIND = b"index"
_SNAPSHOT_KIND = b"snapshot"
_RUN_KIND = b"run"
_METADATA_FETCHES = 8  # index segments or manifests fetched at once on a cold cache
_DAMAGE_KIND = b"damage"
_ACK_KIND = b"ack"
_HOLDS_KIND = b"holds"
#: what Object Lock retention protects for live snapshots: everything but locks, runs, damage and holds
_HELD_PREFIXES = (layout.CONFIG, layout.KEYS, layout.INDEX, layout.SNAPSHOTS, layout.DATA)


class Repository:
    def __init__(self, backend: Backend, master: MasterKey, config: dict, params: RepoParams, key_id: str,
                 cache: ObjectCache | None = None) -> None:
        self._backend = backend
        self._master = master
        self.id: str = config["id"]
        self.params = params
        self.key_id = key_id
        self._envelope = Envelope(master, self.id, params.compression_level)
        self.cache = cache if cache is not None else ObjectCache.for_repo(self.id)
        #: keyed BLAKE3 of a chunk's plaintext: its name in the repository (thread-safe)
        self.chunk_id = self._envelope.chunk_id
        self._listings: dict[str, Future] = {}  # prefix -> listing under way (prefetch_listings)

    def __repr__(self) -> str:  # never print key material, even in a traceback
        return f"Repository({self.id[:8]} at {self.location})"

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self._backend.location

    @property
    def capabilities(self) -> Capabilities:
        return self._backend.capabilities

    @classmethod
    def init(cls, backend: Backend, passphrase: bytes, *, params: RepoParams | None = None,
             kdf: KdfParams | None = None, cache: ObjectCache | None = None) -> Repository:
        return cls.unlocked(backend, create(backend, passphrase, params or RepoParams(), kdf or KdfParams()),
                            cache=cache)

    @classmethod
    def init_from(cls, backend: Backend, passphrase: bytes, source: Repository, *, share_keys: bool,
                  kdf: KdfParams | None = None, cache: ObjectCache | None = None) -> Repository:
        """A new repository for copies of `source` (`agent init --from-repo`).

        It always takes the source's parameters and chunker seed, so that backups made directly into
        it cut the disk where the source's did and deduplicate against the copies. With `share_keys`
        it also takes the master key and the repository id: then every sealed blob, pack and
        manifest of the source is valid in it as it is, and `agent copy` moves them without
        opening them (a replica). Without, its own keys: the copy opens and seals each blob again.
        """
        import dataclasses

        master = source._master if share_keys else dataclasses.replace(
            MasterKey.generate(), chunker_seed=source._master.chunker_seed)
        keys = create(backend, passphrase, source.params, kdf or KdfParams(), master=master,
                      repo_id=source.id if share_keys else None)
        return cls.unlocked(backend, keys, cache=cache)

    @classmethod
    def open(cls, backend: Backend, passphrase: bytes, *, cache: ObjectCache | None = None) -> Repository:
        return cls.unlocked(backend, unlock(backend, passphrase), cache=cache)

    @classmethod
    def unlocked(cls, backend: Backend, keys: Unlocked, *, cache: ObjectCache | None = None) -> Repository:
        """A repository whose key `unlock` already derived (agent.repo.keyring says why it is separate)."""
        params = open_config(keys.config, keys.master.encryption_key)
        return cls(backend, keys.master, keys.config, params, keys.key_id, cache)

    def verify_storage(self) -> None:
        """Read index segments and manifests from storage, never from the local cache, for the rest
        of this session: check and repair must see damage to the stored copies."""
        self.cache.serves = False

    def close(self) -> None:
        with translated("cannot close the storage connection"):
            self._backend.close()

    def lock(self, *, exclusive: bool, command: str, wait: float = 0.0) -> Lock:
        with translated("cannot write a lock"):
            return Lock(self._backend, self._envelope, exclusive, command).acquire(wait)

    def reader_lock(self, *, command: str, wait: float, warn: Callable[[str], None]) -> AbstractContextManager:
        """A shared lock for a command that only reads (ls, extract, mount); on a repository this user
        may read but not write, none, with a warning: a prune running meanwhile could remove packs
        being read, which then fail authentication-checked reads, never give wrong data."""
        try:
            return Lock(self._backend, self._envelope, False, command).acquire(wait)
        except PermissionDenied:
            warn("the repository is read-only for this user: reading without a lock (a prune running at the same "
                 "time would make reads of the packs it removes fail)")
            return nullcontext()
        except BackendError as exc:
            raise storage_error(exc, "cannot write a lock") from None

    def list_locks(self, unreadable: list[str] | None = None) -> list[LockInfo]:
        with translated("cannot list locks"):
            return list_locks(self._backend, self._envelope, unreadable)

    def remove_locks(self, *, all_locks: bool = False) -> int:
        with translated("cannot remove locks"):
            return remove_stale(self._backend, self._envelope, all_locks=all_locks)

    # ---- leftovers of writes that never finished -------------------------------------------
    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        """Hidden temporaries and unfinished uploads that killed or cut-off writers left, at least
        `older_than` seconds old: never part of the repository, yet taking space (or billed)."""
        with translated("cannot look for leftovers of interrupted writes"):
            return self._backend.list_leftovers(older_than)

    def remove_leftover(self, leftover: Leftover) -> None:
        with translated(f"cannot remove the {leftover.kind} {leftover.name}"):
            self._backend.remove_leftover(leftover)

    # ---- keys ------------------------------------------------------------------------------
    def list_keys(self) -> list[dict]:
        out = []
        with translated("cannot list the repository keys"):
            stored = [(layout.name_of(i.key), self._backend.get(i.key)) for i in self._backend.list(layout.KEYS)]
        for key_id, data in stored:
            try:
                meta, damaged = keyfiles.read_meta(data), None
            except (KeyFileDamaged, UnsupportedSuite) as exc:  # listed, so it can be found and removed
                meta, damaged = {}, str(exc)
            fields = {k: meta[k] if isinstance(meta.get(k), str) else None
                      for k in ("created", "host", "user", "label")}
            out.append({"id": key_id, "current": key_id == self.key_id, **fields, "damaged": damaged})
        return out

    def damaged_keys(self) -> list[tuple[str, str]]:
        """Key files that fail their integrity digest or are no key file: (id, problem)."""
        return damaged_keys(self._backend)

    def add_key(self, passphrase: bytes, *, label: str = "", kdf: KdfParams | None = None) -> str:
        key_id = secrets.token_hex(16)
        data = keyfiles.wrap(self._master, passphrase, self.id, kdf or KdfParams(), key_meta(label))
        self._put(layout.key_file(key_id), data, "cannot store the new key", mode=PutMode.CREATE)
        return key_id

    def remove_key(self, key_id: str) -> None:
        with translated("cannot list the repository keys"):
            ids = [layout.name_of(i.key) for i in self._backend.list(layout.KEYS)]
        matches = [k for k in ids if k.startswith(key_id)]
        if len(matches) != 1:
            raise UsageError(f"key id {key_id!r} matches {len(matches)} keys; `agent key list` shows them")
        if matches[0] == self.key_id:
            raise UsageError("refusing to remove the key this session was opened with; open with another key first")
        with translated(f"cannot remove key {matches[0][:8]}"):
            self._backend.delete(layout.key_file(matches[0]))

    def replace_key(self, old_id: str, new_id: str) -> None:
        """Drop `old_id` once `new_id` (already stored) opens the repository: the order keeps one valid key."""
        with translated(f"cannot remove the old key {old_id[:8]}"):
            self._backend.delete(layout.key_file(old_id))
        self.key_id = new_id

    # ---- copies between repositories --------------------------------------------------------
    def is_replica_of(self, other: Repository) -> bool:
        """Same id and master key (`init --from-repo --share-keys`): sealed objects move as they are."""
        return self.id == other.id and hmac.compare_digest(self._master.to_bytes(), other._master.to_bytes())

    def same_chunk_ids(self, other: Repository) -> bool:
        """Whether a chunk has the same id (keyed hash) in both repositories."""
        return hmac.compare_digest(self._master.id_key, other._master.id_key)

    def same_chunking(self, other: Repository) -> bool:
        """Whether both cut a disk at the same places (parameters and secret seed): else backups made
        directly into one never deduplicate against snapshots copied from the other."""
        return self.params.chunker == other.params.chunker and self._master.chunker_seed == other._master.chunker_seed

    def read_snapshot_object(self, name: str) -> bytes:
        """A manifest as stored (sealed), checked against its name: for a copy to a replica."""
        return self._get_cached("snapshots", layout.snapshot(name), name)

    def store_snapshot_object(self, name: str, sealed: bytes) -> None:
        """Store a manifest sealed by a replica of this repository under its own name; it must open here."""
        if object_id(sealed) != name:
            raise CorruptObject(f"snapshot {name[:8]} does not match its name (damaged or truncated)")
        what = f"snapshot {name[:8]}"
        Snapshot.from_json(self._envelope.decompress(self._envelope.open_object(_SNAPSHOT_KIND, sealed, what),
                                                     name=what), name)
        self._put(layout.snapshot(name), sealed, "cannot upload the snapshot manifest")
        self.cache.put("snapshots", name, sealed)

    def store_pack_bytes(self, pack_id: str, data: bytes) -> tuple[str, int, list[PackEntry]]:
        """Store a whole pack of a replica as it is (its name and header checked here first)."""
        entries = read_pack_bytes(self._envelope, data, pack_id)
        self._put(layout.pack(pack_id), data, f"cannot upload pack {pack_id[:16]}")
        return pack_id, len(data), entries

    # ---- packs -----------------------------------------------------------------------------
    def _put(self, key: str, data: bytes, what: str, mode: PutMode = PutMode.CREATE) -> None:
        try:
            self._backend.put(key, data, mode=mode)
        except AlreadyExists:
            pass  # content-addressed: the same name holds the same bytes
        except BackendError as exc:
            raise storage_error(exc, what) from None

    def write_pack(self, pack: SpooledPack) -> None:
        try:
            self._backend.put_file(layout.pack(pack.id), pack.file, pack.size, mode=PutMode.CREATE)
        except AlreadyExists:
            pass  # content-addressed: the same name holds the same bytes
        except BackendError as exc:
            raise storage_error(exc, f"cannot upload pack {pack.id[:16]}") from None

    def read_pack_range(self, pack_id: str, offset: int, length: int) -> bytes:
        try:
            data = self._backend.get(layout.pack(pack_id), offset=offset, length=length)
        except BackendError as exc:
            raise storage_error(exc, f"cannot read pack {pack_id[:16]}") from None
        if len(data) != length:
            raise CorruptObject(f"pack {pack_id[:16]} is truncated")
        return data

    def read_pack(self, pack_id: str) -> bytes:
        try:
            return self._backend.get(layout.pack(pack_id))
        except BackendError as exc:
            raise storage_error(exc, f"cannot read pack {pack_id[:16]}") from None

    def list_packs(self) -> dict[str, int]:
        try:
            return {layout.name_of(i.key): i.size for i in self._listed(layout.DATA)}
        except BackendError as exc:
            raise storage_error(exc, "cannot list packs") from None

    def read_pack_header(self, pack_id: str, size: int) -> list[PackEntry]:
        tail = self.read_pack_range(pack_id, max(0, size - 65536), min(size, 65536))
        off, hlen = header_location(size, tail, pack_id)
        start = off - (size - len(tail))
        sealed = tail[start:start + hlen] if start >= 0 else self.read_pack_range(pack_id, off, hlen)
        return parse_header(self._envelope, sealed, off, pack_id)

    def read_pack_entries(self, pack_id: str) -> tuple[bytes, list[PackEntry]]:
        """A whole pack and its header's entries (repacking: sealed blobs move as they are)."""
        data = self.read_pack(pack_id)
        return data, read_pack_bytes(self._envelope, data, pack_id)

    def store_pack(self, builder: PackBuilder) -> tuple[str, int, list[PackEntry]]:
        """Seal the header of a filled pack, name it and upload it: (pack id, size, entries)."""
        pack = builder.finish(self._envelope)
        try:
            self.write_pack(pack)
        finally:
            pack.close()
        return pack.id, pack.size, pack.entries

    def verify_pack(self, pack_id: str, known: Callable[[], list[PackEntry]] | None = None,
                    ) -> tuple[str | None, set[bytes] | None]:
        """(None, None) when the pack is intact; else what is wrong and which blobs fail (None: all
        of them, or none could be located). When the pack's own header cannot be read, the blobs
        `known` from the index are checked one by one, so a damaged header or a cut-off tail costs
        only the blobs really lost. Missing or damaged: CorruptObject is reported, not raised;
        a storage failure (network, credentials) raises StorageError: that proves nothing."""
        try:
            data = self.read_pack(pack_id)
        except CorruptObject as exc:  # missing or unreadable: reported per pack, the check goes on
            return str(exc), None
        problem = None if object_id(data) == pack_id else "content does not match its name (damaged or truncated)"
        try:
            off, hlen = header_location(len(data), data[-4:], pack_id)
            entries = parse_header(self._envelope, memoryview(data)[off:off + hlen], off, pack_id)
        except CorruptObject as exc:
            entries = known() if known is not None else []
            if not entries:
                return problem or str(exc), None
            problem = str(exc)
        view = memoryview(data)
        bad: set[bytes] = set()
        for e in entries:
            try:
                if e.offset + e.length > len(data):
                    raise CorruptObject("blob lies past the end of the pack")
                self.open_blob(BlobType(e.type), e.id, view[e.offset:e.offset + e.length], e.raw_length)
            except (CorruptObject, ValueError):
                bad.add(e.id)
        if bad or problem:
            prefix = f"{problem}; " if problem else ""
            problem = f"{prefix}{len(bad)} of {len(entries)} blob(s) fail authentication"
        return problem, (bad if problem else None)

    def delete_pack(self, pack_id: str) -> None:
        with translated(f"cannot delete pack {pack_id[:16]}"):
            self._backend.delete(layout.pack(pack_id))

    def prefetch_listings(self, *kinds: str) -> None:
        """Start listing these ("index", "damage", "packs", "snapshots", "runs") all at once in the
        background. A backup asks for them one after another, and over a long round trip each
        listing was a round trip of waiting. The next list of each prefix takes the result; a
        failure surfaces there, as it would have."""
        prefixes = {"index": layout.INDEX, "damage": layout.DAMAGE, "packs": layout.DATA,
                    "snapshots": layout.SNAPSHOTS, "runs": layout.RUNS}
        todo = [prefixes[k] for k in kinds if prefixes[k] not in self._listings]
        if not todo:
            return
        pool = ThreadPoolExecutor(len(todo), thread_name_prefix="listing")
        for prefix in todo:
            self._listings[prefix] = pool.submit(lambda p: list(self._backend.list(p)), prefix)
        pool.shutdown(wait=False)

    def _listed(self, prefix: str) -> Iterable:
        """The backend's listing of `prefix`: the prefetched one if it is under way, else a new one."""
        pending = self._listings.pop(prefix, None)
        return pending.result() if pending is not None else self._backend.list(prefix)

    # ---- index -----------------------------------------------------------------------------
    def list_index_segments(self) -> list[str]:
        with translated("cannot list the index"):
            return [layout.name_of(i.key) for i in self._listed(layout.INDEX)]

    def _get_cached(self, kind: str, key: str, name: str) -> bytes:
        data = self.cache.get(kind, name)
        if data is None:
            try:
                data = self._backend.get(key)
            except BackendError as exc:
                raise storage_error(exc, f"cannot read {kind} {name[:16]}") from None
            if object_id(data) != name:
                raise CorruptObject(f"{kind} {name[:16]} does not match its name (damaged or truncated)")
            self.cache.put(kind, name, data)
        return data

    def _fetch_all(self, kind: str, names: list[str], key_of) -> Iterator[tuple[str, Future]]:
        """(name, future of its bytes) in order, fetched up to _METADATA_FETCHES at a time: on a cold
        cache over a long round trip, one request after another was most of a restore's start."""
        with ThreadPoolExecutor(max(1, min(_METADATA_FETCHES, len(names))), thread_name_prefix="metadata") as pool:
            futures = [(n, pool.submit(self._get_cached, kind, key_of(n), n)) for n in names]
            try:
                yield from futures
            finally:
                for _, f in futures:
                    f.cancel()

    def load_index(self, damaged: list[tuple[str, str]] | None = None, *,
                   damage: DamageRecord | None = None) -> ChunkIndex:
        """The chunk index from every current segment, without the copies `check` recorded as
        damaged (agent.repo.damage: so that nothing deduplicates against them); `index.lost`
        says where those were. `damage` spares listing the records again.

        Strict by default: a damaged segment raises CorruptObject, which deleting code (prune)
        needs, since packs missing from the index look unused. Callers that only read or add pass
        `damaged`: the segment is skipped and (name, what is wrong) added; the packs it covered
        then look unindexed, and `writer.adopt_orphan_packs` indexes them again from their headers.
        """
        index = ChunkIndex()
        names = self.list_index_segments()
        record = damage if damage is not None else self.load_damage()[0]
        superseded: set[str] = set()
        decoded = []
        for name, fetched in self._fetch_all("index", names, layout.index_segment):
            try:
                sealed = fetched.result()
                what = f"index segment {name[:16]}"
                plain = self._envelope.decompress(self._envelope.open_object(_INDEX_KIND, sealed, what), name=what)
                sup, packs, etab = decode_segment(plain, name)
            except CorruptObject as exc:
                if damaged is None:
                    raise CorruptObject(str(exc), hint="`agent repair index` rebuilds the index from the packs' "
                                                       "headers") from None
                damaged.append((name, str(exc)))
                continue
            superseded.update(sup)
            decoded.append((name, packs, etab))
        index.damaged = {p: blobs for p, (_, blobs) in record.packs.items()}
        segments = []
        for name, packs, etab in decoded:
            if name in superseded:
                continue
            if record.packs:
                etab, lost = drop_damaged(packs, etab, lambda p: record.blobs_of(p) if p in record.packs else False)
                index.lost.update(lost)
            segments.append((packs, etab))
        load_segments_into(index, segments)
        index.superseded = superseded & set(names)
        self.cache.prune("index", set(names))
        return index

    def write_index_segment(self, packs: list[tuple[str, int, list[PackEntry]]], supersedes=()) -> tuple[str, int]:
        return self.write_index_plain(encode_segment(packs, supersedes))

    def write_index_plain(self, plain: bytes) -> tuple[str, int]:
        sealed = self._envelope.seal_object(_INDEX_KIND, self._envelope.compress(plain))
        name = object_id(sealed)
        self._put(layout.index_segment(name), sealed, "cannot upload an index segment")
        self.cache.put("index", name, sealed)
        return name, len(sealed)

    def delete_index_segment(self, name: str) -> None:
        with translated(f"cannot delete index segment {name[:16]}"):
            self._backend.delete(layout.index_segment(name))

    # ---- damage records -------------------------------------------------------------------
    def load_damage(self, damaged: list[tuple[str, str]] | None = None) -> tuple[DamageRecord, list[str]]:
        """Every damage record merged (newer entries win) and the names they are stored under.

        Always lenient: a record is advisory (agent.repo.damage), so an unreadable one is skipped
        and reported in `damaged`; its findings come back with the next `check --read-data`.
        """
        with translated("cannot list damage records"):
            names = [layout.name_of(i.key) for i in self._listed(layout.DAMAGE)]
        found = []
        for name in names:
            try:
                sealed = self._backend.get(layout.damage(name))
            except NotFound:  # replaced by a concurrent check meanwhile
                continue
            except BackendError as exc:
                raise storage_error(exc, f"cannot read damage record {name[:8]}") from None
            try:
                if object_id(sealed) != name:
                    raise CorruptObject(f"damage record {name[:8]} does not match its name (damaged or truncated)")
                plain = self._envelope.open_object(_DAMAGE_KIND, sealed, f"damage record {name[:8]}")
                try:
                    found.append(DamageRecord.from_json(plain))
                except ValueError:
                    raise CorruptObject(f"damage record {name[:8]} is malformed") from None
            except CorruptObject as exc:
                if damaged is not None:
                    damaged.append((name, str(exc)))
        merged = DamageRecord()
        for rec in sorted(found, key=lambda r: r.time):
            merged.update(rec)
        return merged, names

    def save_damage(self, record: DamageRecord, replaces: list[str]) -> list[str]:
        """Store `record` (when not empty), then delete the records it replaces. Returns what could
        not be deleted (e.g. under append-only credentials): those stay, and merge under this one."""
        if record:
            sealed = self._envelope.seal_object(_DAMAGE_KIND, record.to_json())
            name = object_id(sealed)
            self._put(layout.damage(name), sealed, "cannot store the damage record")
        else:
            name = ""
        kept = []
        for old in replaces:
            if old == name:
                continue
            try:
                self._backend.delete(layout.damage(old))
            except NotFound:
                pass
            except BackendError:
                kept.append(old)
        return kept

    # ---- Object Lock retention (agent.repo.holds) ----------------------------------------------
    def lock_policy(self) -> LockPolicy | None:
        """The storage's default retention for new objects; None without Object Lock."""
        with translated("cannot read the bucket's Object Lock configuration"):
            return self._backend.lock_policy()

    def stored_objects(self) -> list[ObjectInfo]:
        """Every object retention should protect (config, keys, index, snapshots, packs), with the
        upload time and ETag the listing gives: enough to know each one's retention without asking."""
        with translated("cannot list the repository's objects"):
            return [info for prefix in _HELD_PREFIXES for info in self._backend.list(prefix)
                    if prefix != layout.CONFIG or info.key == layout.CONFIG]

    def total_stored_bytes(self) -> int:
        """The sum of every object's size as the storage lists it: what the repository occupies."""
        with translated("cannot list the repository's objects"):
            return sum(info.size for info in self._backend.list(""))

    def extend_retention(self, key: str, mode: str, until) -> None:
        with translated(f"cannot extend the retention of {key}"):
            self._backend.extend_retention(key, mode, until)

    def _named_records(self, prefix: str, key: Callable[[str], str], what: str
                       ) -> tuple[list[str], Iterator[tuple[str, bytes]]]:
        """The names under `prefix` (records named by the hash of their sealed bytes), and a reader of
        (name, sealed bytes) for each; one deleted since the listing is skipped."""
        with translated(f"cannot list {what}s"):
            names = [layout.name_of(i.key) for i in self._backend.list(prefix)]

        def read() -> Iterator[tuple[str, bytes]]:
            for name in names:
                try:
                    yield name, self._backend.get(key(name))
                except NotFound:
                    continue
                except BackendError as exc:
                    raise storage_error(exc, f"cannot read {what} {name[:8]}") from None

        return names, read()

    def load_holds(self) -> tuple[HoldRecord, list[str]]:
        """The newest readable retention record and the names of all of them. Lenient: without a
        record every object counts as holding only its default retention, which costs extensions
        made again, never an object left unprotected."""
        names, records = self._named_records(layout.RETENTION, layout.retention, "retention record")
        found = []
        for name, sealed in records:
            try:
                if object_id(sealed) != name:
                    continue
                found.append(HoldRecord.from_json(
                    self._envelope.open_object(_HOLDS_KIND, sealed, f"retention record {name[:8]}")))
            except (CorruptObject, ValueError):
                continue
        return max(found, key=lambda r: r.time, default=HoldRecord()), names

    def save_holds(self, record: HoldRecord, replaces: list[str]) -> None:
        """Store `record`, then delete the records it replaces (a failed delete leaves an older
        record, which loses to this one by time)."""
        sealed = self._envelope.seal_object(_HOLDS_KIND, record.to_json())
        name = object_id(sealed)
        self._put(layout.retention(name), sealed, "cannot store the retention record")
        for old in replaces:
            if old != name:
                try:
                    self._backend.delete(layout.retention(old))
                except BackendError:
                    pass

    # ---- snapshots -------------------------------------------------------------------------
    def save_snapshot(self, snap: Snapshot) -> str:
        sealed = self._envelope.seal_object(_SNAPSHOT_KIND, self._envelope.compress(snap.to_json()))
        name = object_id(sealed)
        self._put(layout.snapshot(name), sealed, "cannot upload the snapshot manifest")
        self.cache.put("snapshots", name, sealed)
        snap.id = name
        return name

    def list_snapshots(self, damaged: list[tuple[str, str]] | None = None) -> list[Snapshot]:
        """Every snapshot manifest, oldest first.

        Strict by default: a damaged manifest raises CorruptObject, which is what deleting code
        (forget, prune) needs, since it must not act without knowing every snapshot. Callers
        that only read pass `damaged`: a damaged manifest is then skipped and (name, what is wrong)
        added to it, so one bad manifest does not stop the restore of the others.
        """
        try:
            names = [layout.name_of(i.key) for i in self._listed(layout.SNAPSHOTS)]
        except BackendError as exc:
            raise storage_error(exc, "cannot list snapshots") from None
        out = []
        for name, fetched in self._fetch_all("snapshots", names, layout.snapshot):
            try:
                sealed = fetched.result()
                what = f"snapshot {name[:8]}"
                raw = self._envelope.decompress(self._envelope.open_object(_SNAPSHOT_KIND, sealed, what), name=what)
                try:
                    out.append(Snapshot.from_json(raw, name))
                except (ValueError, KeyError, TypeError):
                    raise CorruptObject(f"snapshot {name[:8]} is malformed") from None
            except CorruptObject as exc:
                if damaged is None:
                    raise CorruptObject(str(exc), hint="put back an intact copy of the manifest if you have one; "
                                                       "else `agent repair snapshots` removes it") from None
                damaged.append((name, str(exc)))
        self.cache.prune("snapshots", set(names))
        return sorted(out, key=lambda s: s.time)

    def delete_snapshot(self, name: str) -> None:
        with translated(f"cannot delete snapshot {name[:8]}"):
            self._backend.delete(layout.snapshot(name))

    # ---- records of runs that ended without a snapshot ------------------------------------------
    def save_run(self, record: RunRecord) -> str:
        """Record an incomplete or failed backup run, so `snapshots --all` can show it.

        Never restorable: it names no chunk list. The next complete run of the same source removes it.
        """
        sealed = self._envelope.seal_object(_RUN_KIND, record.to_json())
        name = object_id(sealed)
        self._put(layout.run(name), sealed, "cannot upload the run record")
        return name

    def list_runs(self, damaged: list[str] | None = None) -> list[tuple[str, RunRecord]]:
        """(name, record) of every readable run record, oldest start first.

        A record that fails authentication or is malformed is skipped and its name added to
        `damaged`: it can protect nothing it cannot name, and it must not stop every backup.
        """
        try:
            names = [layout.name_of(i.key) for i in self._listed(layout.RUNS)]
            out = []
            for name in names:
                try:
                    sealed = self._backend.get(layout.run(name))
                except NotFound:  # removed by a run that finished meanwhile
                    continue
                try:
                    plain = self._envelope.open_object(_RUN_KIND, sealed, f"run record {name[:8]}")
                    out.append((name, RunRecord.from_json(plain)))
                except (CorruptObject, ValueError):
                    if damaged is not None:
                        damaged.append(name)
        except BackendError as exc:
            raise storage_error(exc, "cannot list run records") from None
        return sorted(out, key=lambda r: r[1].started)

    def delete_run(self, name: str) -> None:
        with translated("cannot delete a run record"):
            self._backend.delete(layout.run(name))

    # ---- acknowledgements of suspicious nights ---------------------------------------------
    def save_ack(self, ack: Acknowledgement) -> str:
        """Store an acknowledgement (agent.repo.acks), sealed: only a holder of the key can write one."""
        sealed = self._envelope.seal_object(_ACK_KIND, ack.to_json())
        name = object_id(sealed)
        self._put(layout.ack(name), sealed, "cannot store the acknowledgement")
        return name

    def list_acks(self, damaged: list[tuple[str, str]] | None = None) -> list[tuple[str, Acknowledgement]]:
        """(name, acknowledgement) of every one that authenticates. One that does not is left out (its
        night stays protected) and (name, what is wrong) added to `damaged`."""
        _, records = self._named_records(layout.ACKS, layout.ack, "acknowledgement")
        out = []
        for name, sealed in records:
            try:
                if object_id(sealed) != name:
                    raise CorruptObject(f"acknowledgement {name[:8]} does not match its name (damaged or truncated)")
                plain = self._envelope.open_object(_ACK_KIND, sealed, f"acknowledgement {name[:8]}")
                try:
                    out.append((name, Acknowledgement.from_json(plain)))
                except ValueError:
                    raise CorruptObject(f"acknowledgement {name[:8]} is malformed") from None
            except CorruptObject as exc:
                if damaged is not None:
                    damaged.append((name, str(exc)))
        return sorted(out, key=lambda a: a[1].time)

    # ---- blobs -----------------------------------------------------------------------------
    def open_blob(self, btype: BlobType, cid: bytes, sealed: bytes | memoryview, raw_length: int) -> bytes:
        """Authenticate, decompress and check one blob; CorruptObject when anything is off."""
        return self._envelope.open(btype, cid, sealed, raw_length)

    def seal_blob(self, btype: BlobType, cid: bytes, data: bytes | memoryview) -> bytes:
        """Compress and seal one blob for a pack (thread-safe: the writer's pool calls it)."""
        return self._envelope.seal(btype, cid, data)

    # ---- chunking and chunk lists ------------------------------------------------------------
    def new_chunker(self) -> pyfastcdc.FastCDC:
        """A cutter with this repository's parameters and secret seed (agent.repo.chunker)."""
        return make_chunker(self.params.chunker, self._master.chunker_seed)

    def chunk_list_writer(self) -> ChunkListWriter:
        """The writer of a new snapshot's chunk list, with its keyed digest."""
        return ChunkListWriter(keyed_hasher(self._master.id_key))

    def load_chunk_list(self, index: ChunkIndex, snap: Snapshot) -> list[bytes]:
        """The snapshot's record groups; CorruptObject when any is missing, damaged or tampered with."""
        groups = []
        digest = keyed_hasher(self._master.id_key)
        for hex_id in snap.chunk_list:
            cid = bytes.fromhex(hex_id)
            # a copy recorded as damaged is tried when there is no other (a record may be stale or
            # forged); it is authenticated below like any other
            loc = index.get(cid) or index.lost.get(cid)
            if loc is None:
                raise CorruptObject(f"snapshot {snap.id[:8]}: chunk-list blob {hex_id[:16]} is not in the index")
            sealed = self.read_pack_range(loc.pack_id, loc.offset, loc.length)
            data = self.open_blob(BlobType.META, cid, sealed, loc.raw_length)
            digest.update(data)
            groups.append(decode_group(data, hex_id))
        if digest.hexdigest() != snap.digest:
            raise CorruptObject(f"snapshot {snap.id[:8]}: chunk list does not match the manifest digest")
        total = sum(length for _, length, _ in records(groups))
        if total != snap.size:
            raise CorruptObject(f"snapshot {snap.id[:8]}: chunk list covers {total} bytes, image is {snap.size}")
        return groups

    def snapshot_extents(self, index: ChunkIndex, snap: Snapshot) -> Iterator[Extent]:
        """The snapshot's image as runs of data chunks and zeros, in image order (verified first)."""
        return extents(self.load_chunk_list(index, snap))
