"""One copy: lock both repositories, find what the target lacks, move it through the target's
write path (agent.repo.writer), and save each snapshot's manifest once its data is indexed.

Two modes. A replica (same keys and id, `init --from-repo --share-keys`): blobs, whole packs and
manifests move sealed, as they are. Otherwise every needed blob is opened, its id computed with the
target's key, and sealed again; chunk lists are rewritten with the target's ids.

Interrupted, it resumes: the target's index is checkpointed as packs land, packs left unindexed are
adopted at the next start (writer.adopt_orphan_packs), and a manifest is written only after all
its data, so a rerun skips the snapshots that made it and uploads only what is still missing.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import defaultdict
from contextlib import ExitStack
from typing import Callable

from agent.copy import idmap
from agent.copy.fetch import Want, fetch
from agent.copy.options import CopyOptions, CopyResult
from agent.copy.select import COPIED_FROM, TargetSnapshots, copied_from, select
from agent.errors import CorruptObject
from agent.progress import Advanced, Finished, Listener, Started, Warning, ignore
from agent.repo.chunklist import DATA, records
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex
from agent.repo.packs import PackEntry
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.repo.writer import BlobWriter, StopRequested, adopt_orphan_packs


class _Stopped(Exception):
    pass


class _Copier:
    """Copies one snapshot at a time; the caller's thread, the writer's pools and the fetch threads."""

    def __init__(self, src: Repository, sindex: ChunkIndex, dst: Repository, dindex: ChunkIndex,
                 writer: BlobWriter, opts: CopyOptions, res: CopyResult, listener: Listener,
                 targets: _TargetIds, before_manifest: Callable[[], None]) -> None:
        self.src, self.sindex, self.dst, self.dindex = src, sindex, dst, dindex
        self.writer, self.opts, self.res, self.listener = writer, opts, res, listener
        self.targets, self.before_manifest = targets, before_manifest
        self.mapping: dict[bytes, bytes] = {}  # source chunk id -> target chunk id (reseal mode)
        self.done = 0

    def should_stop(self) -> str | None:
        return _stop_reason(self.opts)

    def _read(self, n: int) -> None:
        self.res.read_bytes += n
        self.done += n
        self.listener(Advanced(self.done, stored_bytes=self.writer.uploaded_bytes))
        self.writer.poll()
        if self.should_stop():
            raise _Stopped

    def _locate(self, cids: list[bytes], snap: Snapshot) -> list[Want]:
        wants = []
        for cid in cids:
            loc = self.sindex.get(cid)
            if loc is None:
                raise CorruptObject(f"source snapshot {snap.id[:8]}: chunk {cid.hex()[:16]} is in no pack",
                                    hint="run `agent check` on the source repository")
            wants.append(Want(cid, loc))
        return wants

    # ---- replica: sealed objects as they are --------------------------------------------------
    def copy_replica(self, snap: Snapshot) -> Snapshot:
        groups = self.src.load_chunk_list(self.sindex, snap)
        ids = dict.fromkeys([bytes.fromhex(h) for h in snap.chunk_list]
                            + [cid for kind, _, cid in records(groups) if kind == DATA])
        need = [cid for cid, known in zip(ids, self.dindex.known(list(ids))) if not known]
        by_pack: dict[str, list[Want]] = defaultdict(list)
        for w in self._locate(need, snap):
            by_pack[w.loc.pack_id].append(w)
        partial: list[Want] = []
        for pack_id, wants in by_pack.items():
            if len(wants) == len(self.sindex.pack_entries(pack_id)):  # every blob needed: the pack as it is
                self.writer.add_pack(functools.partial(self._whole_pack, pack_id), [w.cid for w in wants])
                self.res.whole_packs += 1
                self._read(self.sindex.pack_sizes[self.sindex.pack_number(pack_id, 0)])
            else:
                partial.extend(wants)
        for got in fetch(self.src, partial, self.opts.fetches, self._read):
            self.writer.add_sealed(BlobType(got.want.loc.type), got.want.cid, got.sealed, got.want.loc.raw_length)
        sealed = self.src.read_snapshot_object(snap.id)
        self._finish_data()
        self.dst.store_snapshot_object(snap.id, sealed)
        return snap

    def _whole_pack(self, pack_id: str) -> tuple[str, int, list[PackEntry]]:
        """On an upload thread: read, check (name and header) and store one pack unchanged."""
        data, _ = self.src.read_pack_entries(pack_id)
        return self.dst.store_pack_bytes(pack_id, data)

    # ---- reseal: opened, re-identified, sealed for the target ------------------------------------
    def copy_resealed(self, snap: Snapshot, earlier: list[tuple[Snapshot, Snapshot]]) -> Snapshot:
        same_ids = self.dst.same_chunk_ids(self.src)
        groups = self.src.load_chunk_list(self.sindex, snap)
        data_ids = list(dict.fromkeys(cid for kind, _, cid in records(groups) if kind == DATA))
        if not same_ids:
            for s, d in earlier:
                if any(cid not in self.mapping for cid in data_ids):
                    idmap.learn(self.mapping, self.src, self.sindex, s, self.dst, self.dindex, d, self.listener)
        mapped = [self.mapping.get(c, c if same_ids else b"") for c in data_ids]
        known = self.dindex.known([m for m in mapped if m])
        it = iter(known)
        need = [c for c, m in zip(data_ids, mapped) if not (m and next(it))]
        ident = None if same_ids else self.dst.chunk_id  # hashed on the fetch threads
        for got in fetch(self.src, self._locate(need, snap), self.opts.fetches, self._read, ident):
            tcid = got.target_id or got.want.cid
            self.mapping[got.want.cid] = tcid
            if tcid not in self.dindex:
                self.writer.add(BlobType.DATA, tcid, got.plain)
        lists = self.dst.chunk_list_writer()
        for kind, length, cid in records(groups):
            if kind == DATA:
                lists.add_data(length, cid if same_ids else self.mapping[cid])
            else:
                lists.add_zero(length)
        lists.finish()
        meta_ids = []
        for group in lists.ready:
            mid = self.dst.chunk_id(group)
            meta_ids.append(mid.hex())
            self.writer.add_if_new(BlobType.META, mid, group)
        parent = self.targets.copy_of_id(snap.parent) if snap.parent else None
        stats = {k: v for k, v in snap.stats.items() if k != "resumed_runs"}  # source run records
        copy = dataclasses.replace(snap, digest=lists.digest(), chunk_list=meta_ids, parent=parent,
                                   stats={**stats, COPIED_FROM: snap.id}, id="")
        self._finish_data()
        self.dst.save_snapshot(copy)
        return copy

    def _finish_data(self) -> None:
        """Every blob of the snapshot uploaded and indexed, and the lock still ours: then its manifest."""
        self.writer.finish()
        self.before_manifest()


class _TargetIds:
    """Target id of a source snapshot's copy (for the `parent` of a resealed manifest)."""

    def __init__(self, targets: TargetSnapshots, src_by_id: dict[str, Snapshot]) -> None:
        self._targets, self._src = targets, src_by_id

    def copy_of_id(self, src_id: str) -> str | None:
        s = self._src.get(src_id)
        found = self._targets.copy_of(s) if s is not None else None
        return found.id if found is not None else None


def _stop_reason(opts: CopyOptions) -> str | None:
    if opts.stop is not None and opts.stop.is_set():
        return "stopped on request"
    if opts.deadline is not None and time.time() >= opts.deadline.timestamp():
        return f"deadline {opts.deadline.astimezone().strftime('%Y-%m-%d %H:%M')} reached"
    return None


def _earlier_pairs(targets: TargetSnapshots, src_snaps: list[Snapshot], snap: Snapshot) -> list[tuple]:
    """Copies made earlier of this host and source, newest first (idmap learns their id pairs)."""
    pairs = []
    for s in sorted(src_snaps, key=lambda s: s.time, reverse=True):
        if s.id == snap.id or s.host != snap.host or s.source_path != snap.source_path:
            continue
        d = targets.copy_of(s)
        if d is not None and (copied_from(d) == s.id or d.id == s.id):
            pairs.append((s, d))
        if len(pairs) >= idmap.EARLIER_PAIRS:
            break
    return pairs


def _load_index(repo: Repository, listener: Listener, *, write: bool) -> tuple[ChunkIndex, list[str]]:
    bad: list[tuple[str, str]] = []
    index = repo.load_index(bad)
    for name, problem in bad:
        listener(Warning(f"index segment {name[:16]} of {repo.location} is damaged and ignored ({problem}); "
                         "its packs are indexed from their headers"))
    return index, adopt_orphan_packs(repo, index, listener, write=write)


def run_copy(src: Repository, dst: Repository, opts: CopyOptions | None = None,
             listener: Listener = ignore) -> CopyResult:
    """Copy the selected snapshots of `src` that `dst` lacks. Stopped early (deadline, request), it
    returns an incomplete result; what was uploaded is indexed and the next run reuses it."""
    opts = opts or CopyOptions()
    t0 = time.monotonic()
    replica = dst.is_replica_of(src)
    res = CopyResult(mode="replica" if replica else "reseal")

    def warn(message: str) -> None:
        res.warnings.append(message)
        listener(Warning(message))

    if not replica and not dst.same_chunking(src):
        res.dedup_lost = True
        warn(f"{dst.location} cuts disks differently from {src.location} (other chunker parameters or seed): "
             "the copies deduplicate among themselves, but backups made directly into it will not deduplicate "
             "against them; `agent init --from-repo` creates a target that does")
    with ExitStack() as stack:
        stack.enter_context(src.lock(exclusive=False, command="copy", wait=opts.lock_wait))
        lock = stack.enter_context(dst.lock(exclusive=False, command="copy", wait=opts.lock_wait))
        sindex, _ = _load_index(src, listener, write=False)
        damaged: list[tuple[str, str]] = []
        src_snaps = src.list_snapshots(damaged)
        for name, problem in damaged:
            warn(f"source snapshot {name[:8]} is damaged and not copied: {problem}")
        chosen = select(src_snaps, opts)
        dindex, adopted = _load_index(dst, listener, write=True)
        res.recovered_packs = len(adopted)
        if adopted:
            warn(f"reusing {len(adopted)} pack(s) an interrupted copy or backup left in {dst.location}")
        targets = TargetSnapshots(dst.list_snapshots([]))
        todo = []
        for snap in chosen:
            if targets.copy_of(snap) is not None:
                res.skipped.append(snap.id)
            else:
                todo.append(snap)
        listener(Started("copy", sum(s.size for s in todo)))
        writer = BlobWriter(dst, dindex, workers=opts.workers, uploads=opts.uploads,
                            checkpoint_bytes=opts.checkpoint_bytes,
                            should_stop=lambda: _stop_reason(opts), before_index=lock.ensure_valid)
        copier = _Copier(src, sindex, dst, dindex, writer, opts, res, listener,
                         _TargetIds(targets, {s.id: s for s in src_snaps}), lock.ensure_valid)
        try:
            for snap in todo:
                if (reason := _stop_reason(opts)) is not None:
                    raise _Stopped(reason)
                if replica:
                    copy = copier.copy_replica(snap)
                else:
                    copy = copier.copy_resealed(snap, _earlier_pairs(targets, src_snaps, snap))
                targets.add(snap, copy)
                res.copied.append((snap.id, copy.id))
        except (_Stopped, StopRequested):
            res.stopped = _stop_reason(opts) or "stopped on request"
            writer.stop_early()
        except BaseException:
            writer.abort()
            raise
        finally:
            writer.close()
            res.uploaded_bytes = writer.stored_bytes
            res.uploaded_packs = len(writer.uploaded_packs)
    res.duration_s = round(time.monotonic() - t0, 3)
    listener(Finished("copy"))
    return res

