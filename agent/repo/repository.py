"""Repository: opens the format over a backend for the engine (backup, restore, check).

It owns the backend; upper layers get blobs, packs, index and snapshots, never raw keys. Backend
errors become agent errors here, with messages that say what to do.
"""

from __future__ import annotations

import json
import secrets

from backends.base import Backend, PutMode
from backends.errors import AlreadyExists, BackendError, NotFound
from crypto import keys as keyfiles
from crypto.ids import object_id
from crypto.kdf import KdfParams
from crypto.keys import MasterKey
from agent.errors import CorruptObject, UsageError
from agent.repo import layout
from agent.repo.cache import ObjectCache
from agent.repo.envelope import BlobType, Envelope
from agent.repo.format import RepoParams, open_config
from agent.repo.index import ChunkIndex, decode_segment, encode_segment, load_segments_into
from agent.repo.locks import Lock, remove_stale
from agent.repo.packs import PackEntry, SpooledPack, header_location, parse_header
from agent.repo.snapshots import Snapshot
from agent.repo.keyring import Unlocked, create, key_meta, storage_error, unlock

_INDEX_KIND = b"index"
_SNAPSHOT_KIND = b"snapshot"
_RUN_KIND = b"run"


class Repository:
    def __init__(self, backend: Backend, master: MasterKey, config: dict, params: RepoParams, key_id: str,
                 cache: ObjectCache | None = None) -> None:
        self._backend = backend
        self.master = master
        self.id: str = config["id"]
        self.params = params
        self.key_id = key_id
        self.envelope = Envelope(master, self.id, params.compression_level)
        self.cache = cache if cache is not None else ObjectCache.for_repo(self.id)

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self._backend.location

    @property
    def capabilities(self):
        return self._backend.capabilities

    @classmethod
    def init(cls, backend: Backend, passphrase: bytes, *, params: RepoParams | None = None,
             kdf: KdfParams | None = None, cache: ObjectCache | None = None) -> "Repository":
        return cls.unlocked(backend, create(backend, passphrase, params or RepoParams(), kdf or KdfParams()),
                            cache=cache)

    @classmethod
    def open(cls, backend: Backend, passphrase: bytes, *, cache: ObjectCache | None = None) -> "Repository":
        return cls.unlocked(backend, unlock(backend, passphrase), cache=cache)

    @classmethod
    def unlocked(cls, backend: Backend, keys: Unlocked, *, cache: ObjectCache | None = None) -> "Repository":
        """A repository whose key `unlock` already derived (agent.repo.keyring says why it is separate)."""
        params = open_config(keys.config, keys.master.encryption_key)
        return cls(backend, keys.master, keys.config, params, keys.key_id, cache)

    def close(self) -> None:
        self._backend.close()

    def lock(self, *, exclusive: bool, command: str, wait: float = 0.0) -> Lock:
        try:
            return Lock(self._backend, self.envelope, exclusive, command).acquire(wait)
        except BackendError as exc:
            raise storage_error(exc, "cannot write a lock") from None

    def remove_locks(self, *, all_locks: bool = False) -> int:
        return remove_stale(self._backend, self.envelope, all_locks=all_locks)

    # ---- keys ------------------------------------------------------------------------------
    def list_keys(self) -> list[dict]:
        out = []
        for info in self._backend.list(layout.KEYS):
            key_id = layout.name_of(info.key)
            meta = keyfiles.read_meta(self._backend.get(info.key))
            out.append({"id": key_id, "current": key_id == self.key_id, **{k: meta.get(k) for k in
                        ("created", "host", "user", "label")}})
        return out

    def add_key(self, passphrase: bytes, *, label: str = "", kdf: KdfParams | None = None) -> str:
        key_id = secrets.token_hex(16)
        data = keyfiles.wrap(self.master, passphrase, self.id, kdf or KdfParams(), key_meta(label))
        self._put(layout.key_file(key_id), data, "cannot store the new key", mode=PutMode.CREATE)
        return key_id

    def remove_key(self, key_id: str) -> None:
        ids = [layout.name_of(i.key) for i in self._backend.list(layout.KEYS)]
        matches = [k for k in ids if k.startswith(key_id)]
        if len(matches) != 1:
            raise UsageError(f"key id {key_id!r} matches {len(matches)} keys; `agent key list` shows them")
        if matches[0] == self.key_id:
            raise UsageError("refusing to remove the key this session was opened with; open with another key first")
        self._backend.delete(layout.key_file(matches[0]))

    def replace_key(self, old_id: str, new_id: str) -> None:
        """Drop `old_id` once `new_id` (already stored) opens the repository: the order keeps one valid key."""
        self._backend.delete(layout.key_file(old_id))
        self.key_id = new_id

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
            return {layout.name_of(i.key): i.size for i in self._backend.list(layout.DATA)}
        except BackendError as exc:
            raise storage_error(exc, "cannot list packs") from None

    def read_pack_header(self, pack_id: str, size: int) -> list[PackEntry]:
        tail = self.read_pack_range(pack_id, max(0, size - 65536), min(size, 65536))
        off, hlen = header_location(size, tail)
        start = off - (size - len(tail))
        sealed = tail[start:start + hlen] if start >= 0 else self.read_pack_range(pack_id, off, hlen)
        return parse_header(self.envelope, sealed, off, pack_id)

    def delete_pack(self, pack_id: str) -> None:
        self._backend.delete(layout.pack(pack_id))

    # ---- index -----------------------------------------------------------------------------
    def list_index_segments(self) -> list[str]:
        return [layout.name_of(i.key) for i in self._backend.list(layout.INDEX)]

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

    def load_index(self) -> ChunkIndex:
        index = ChunkIndex()
        names = self.list_index_segments()
        superseded: set[str] = set()
        decoded = []
        for name in names:
            sealed = self._get_cached("index", layout.index_segment(name), name)
            plain = self.envelope.decompress(self.envelope.open_object(_INDEX_KIND, sealed, f"index segment {name[:16]}"))
            sup, packs, etab = decode_segment(plain, name)
            superseded.update(sup)
            decoded.append((name, packs, etab))
        load_segments_into(index, [(packs, etab) for name, packs, etab in decoded if name not in superseded])
        self.cache.prune("index", set(names))
        return index

    def write_index_segment(self, packs: list[tuple[str, int, list[PackEntry]]], supersedes=()) -> tuple[str, int]:
        return self.write_index_plain(encode_segment(packs, supersedes))

    def write_index_plain(self, plain: bytes) -> tuple[str, int]:
        sealed = self.envelope.seal_object(_INDEX_KIND, self.envelope.compress(plain))
        name = object_id(sealed)
        self._put(layout.index_segment(name), sealed, "cannot upload an index segment")
        self.cache.put("index", name, sealed)
        return name, len(sealed)

    def delete_index_segment(self, name: str) -> None:
        self._backend.delete(layout.index_segment(name))

    # ---- snapshots -------------------------------------------------------------------------
    def save_snapshot(self, snap: Snapshot) -> str:
        sealed = self.envelope.seal_object(_SNAPSHOT_KIND, self.envelope.compress(snap.to_json()))
        name = object_id(sealed)
        self._put(layout.snapshot(name), sealed, "cannot upload the snapshot manifest")
        self.cache.put("snapshots", name, sealed)
        snap.id = name
        return name

    def list_snapshots(self) -> list[Snapshot]:
        try:
            names = [layout.name_of(i.key) for i in self._backend.list(layout.SNAPSHOTS)]
        except BackendError as exc:
            raise storage_error(exc, "cannot list snapshots") from None
        out = []
        for name in names:
            sealed = self._get_cached("snapshots", layout.snapshot(name), name)
            raw = self.envelope.decompress(self.envelope.open_object(_SNAPSHOT_KIND, sealed, f"snapshot {name[:8]}"))
            out.append(Snapshot.from_json(raw, name))
        self.cache.prune("snapshots", set(names))
        return sorted(out, key=lambda s: s.time)

    def delete_snapshot(self, name: str) -> None:
        self._backend.delete(layout.snapshot(name))

    # ---- records of runs that ended without a snapshot ------------------------------------------
    def save_run(self, record: dict) -> str:
        """Record an incomplete or failed backup run, so `snapshots --all` can show it.

        Never restorable: it names no chunk list. The next complete run of the same source removes it.
        """
        sealed = self.envelope.seal_object(_RUN_KIND, json.dumps(record, separators=(",", ":")).encode())
        name = object_id(sealed)
        self._put(layout.run(name), sealed, "cannot upload the run record")
        return name

    def list_runs(self) -> list[tuple[str, dict]]:
        try:
            names = [layout.name_of(i.key) for i in self._backend.list(layout.RUNS)]
            out = []
            for name in names:
                try:
                    sealed = self._backend.get(layout.run(name))
                except NotFound:  # removed by a run that finished meanwhile
                    continue
                out.append((name, json.loads(self.envelope.open_object(_RUN_KIND, sealed, f"run record {name[:8]}"))))
        except BackendError as exc:
            raise storage_error(exc, "cannot list run records") from None
        except ValueError:
            raise CorruptObject("a run record is malformed") from None
        return sorted(out, key=lambda r: str(r[1].get("started", "")))

    def delete_run(self, name: str) -> None:
        try:
            self._backend.delete(layout.run(name))
        except BackendError as exc:
            raise storage_error(exc, "cannot delete a run record") from None

    # ---- blobs -----------------------------------------------------------------------------
    def open_blob(self, btype: BlobType, cid: bytes, sealed: bytes, raw_length: int) -> bytes:
        return self.envelope.open(btype, cid, sealed, raw_length)
