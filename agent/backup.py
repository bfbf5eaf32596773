"""Backup orchestration: source -> chunker -> keyed hash -> dedup -> compress+seal -> packs -> upload
-> index checkpoints -> index segment -> snapshot.

Bounded queues between stages keep memory flat whatever the disk size. Per stretch of the disk
(agent.stretches) one thread reads and one cuts (pyfastcdc releases the GIL); this thread looks
chunks up and keeps the chunk list, a small pool hashes and another seals (blake3, zstd and
AES-GCM release the GIL too), and an upload pool writes packs. Only what the repository lacks is
sealed and uploaded; zero runs and holes are recorded in the chunk list and never stored.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from crypto.ids import keyed_hasher
from agent import __version__
from agent.buffers import BufferPool
from agent.chunking import BLOCK_SIZE, HEAD_ROOM, Block, Hole, is_zero, make_chunker
from agent.errors import CorruptObject, SourceError
from agent.memory import release_free_memory
from agent.parent_cut import GuidedCutter, ParentChunks
from agent.snapshot_data import load_chunk_list
from agent.stretches import BUFFERS_PER_STRETCH, StretchReader, split
from agent.progress import Advanced, Finished, Listener, Started, Warning, ignore
from agent.repo.chunklist import ChunkListWriter, DeferredRecords
from agent.repo.envelope import BlobType, Envelope
from agent.repo.index import ChunkIndex
from agent.repo.packs import PackBuilder, PackEntry
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot, filter_snapshots, superseded_runs
from agent.source.device import Source, open_source
from agent.source.partitions import read_partition_table

class _StopRequested(Exception):
    """Raised inside the pipeline when a deadline or stop request arrives while it waits on uploads."""


_HASH_DEPTH = 1  # blocks hashed ahead of the dedup step
_SEAL_BYTES = 4 << 20  # raw bytes being compressed and sealed at once: keeps two threads busy; 8 MiB held 4 MB more
# Read buffers that may exist at once (agent.buffers) for one stretch: reading, cutting, the carried
# tail, hashing and chunks queued for sealing each hold one or two; more only raised the peak. Each
# further stretch adds agent.stretches.BUFFERS_PER_STRETCH.
_BUFFERS = 4


@dataclass
class BackupOptions:
    tags: list[str] = field(default_factory=list)
    time: datetime | None = None
    host: str | None = None
    workers: int = max(2, os.cpu_count() or 2)
    uploads: int = 0  # packs uploading at once; 0: the backend's connection limit, at most 4
    checkpoint_bytes: int = 256 << 20
    lock_wait: float = 0.0  # seconds to wait for a running prune
    deadline: datetime | None = None  # stop cleanly at this time (--stop-at / --max-duration)
    stop: threading.Event | None = None  # set by a signal handler: stop cleanly now
    direct_io: bool = True  # read the source with O_DIRECT where possible (agent.source.device)
    stretches: int = 2  # stretches of the disk read and cut at once (agent.stretches)
    stretch_min: int = 256 << 20  # smaller sources are read front to back in one stretch


@dataclass
class BackupResult:
    snapshot_id: str | None  # None when the run stopped early (see `stopped`)
    source: str
    source_bytes: int
    read_bytes: int
    zero_bytes: int
    new_bytes: int
    stored_bytes: int
    chunks: int
    new_chunks: int
    duration_s: float
    warnings: list[str]
    recovered_packs: int = 0
    uploaded_bytes: int = 0
    stopped: str | None = None  # why an incomplete run stopped; it resumes next time
    resumed: int = 0  # earlier incomplete runs of this source whose uploads this run reused

    @property
    def complete(self) -> bool:
        return self.stopped is None

    @property
    def dedup_ratio(self) -> float:
        return self.source_bytes / self.stored_bytes if self.stored_bytes else float("inf")


def _hash_block(env: Envelope, block: Block) -> list[tuple[int, int, memoryview, bytes | None]]:
    out = []
    for off, length, view, known in block.chunks:
        if known is not None:  # a parent chunk, verified while cutting
            out.append((off, length, view, known))
        elif view[0] == 0 and view[-1] == 0 and is_zero(view):
            out.append((off, length, view, None))
        else:
            out.append((off, length, view, env.chunk_id(view)))
    return out


class _Pipeline:
    def __init__(self, repo: Repository, index: ChunkIndex, opts: BackupOptions, listener: Listener) -> None:
        self.repo, self.index, self.opts, self.emit = repo, index, opts, listener
        self.env = repo.envelope
        # Hashing is on the critical path (the cutter waits for it to accept parent chunks); sealing
        # is not. One queue put hash jobs behind up to 8 MiB of compression, starving the reader.
        self.hash_pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="hash")
        self.pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="seal")
        self.uploads = opts.uploads or min(4, repo.capabilities.max_connections)
        self.up = ThreadPoolExecutor(self.uploads, thread_name_prefix="upload")
        self.pending: set[bytes] = set()
        self.hash_q: deque[tuple[Future, ChunkListWriter | DeferredRecords]] = deque()
        self.seal_q: deque[tuple[BlobType, bytes, int, Future]] = deque()
        self.seal_bytes = 0
        self.upload_q: deque[Future] = deque()  # each yields (pack id, size, entries)
        self.packs = {BlobType.DATA: PackBuilder(), BlobType.META: PackBuilder()}
        self.unindexed: list[tuple[str, int, list[PackEntry]]] = []
        self.since_checkpoint = 0
        self.chunklist = ChunkListWriter(keyed_hasher(repo.master.id_key))
        self.meta_ids: list[str] = []
        self.read_bytes = self.zero_bytes = self.new_bytes = self.stored_bytes = self.uploaded_bytes = 0
        self.done_bytes = 0
        self.chunks = self.new_chunks = 0
        self.should_stop: Callable[[], str | None] = lambda: None
        self.uploaded_packs: list[str] = []
        self.stopping = False

    # -- stages ---------------------------------------------------------------------------------
    def feed(self, item: Block | Hole, records: ChunkListWriter | DeferredRecords) -> None:
        """Take one block or hole; its chunk-list records go to `records` (agent.stretches says where)."""
        if isinstance(item, Hole):
            self._drain_hashes(0)
            records.add_zero(item.length)
            self.zero_bytes += item.length
            self.done_bytes += item.length
            return
        length = sum(c[1] for c in item.chunks)
        self.read_bytes += length
        self.done_bytes += length  # of the image, over all stretches: what progress shows
        self.hash_q.append((self.hash_pool.submit(_hash_block, self.env, item), records))
        self._drain_hashes(_HASH_DEPTH)
        self._poll_uploads()

    def append_deferred(self, later: DeferredRecords) -> None:
        """The stretches before `later` are done: its records follow them in the chunk list."""
        self._drain_hashes(0)
        later.replay(self.chunklist)
        self._store_meta()

    def _drain_hashes(self, depth: int) -> None:
        while len(self.hash_q) > depth:
            fut, records = self.hash_q.popleft()
            hashed = fut.result()
            known = iter(self.index.known([cid for *_, cid in hashed if cid is not None]))
            for off, length, view, cid in hashed:
                self.chunks += 1
                if cid is None:
                    records.add_zero(length)
                    self.zero_bytes += length
                    continue
                records.add_data(length, cid)
                if next(known) or cid in self.pending:
                    continue
                self._seal(BlobType.DATA, cid, view)
                self.new_bytes += length
                self.new_chunks += 1
            self._store_meta()
            self.emit(Advanced(self.done_bytes, self.new_bytes, self.uploaded_bytes))

    def _seal(self, btype: BlobType, cid: bytes, data) -> None:
        self.pending.add(cid)
        self.seal_q.append((btype, cid, len(data), self.pool.submit(self.env.seal, btype, cid, data)))
        self.seal_bytes += len(data)
        self._drain_seals(_SEAL_BYTES)

    def _store_meta(self) -> None:
        for group in self.chunklist.ready:
            cid = self.env.chunk_id(group)
            self.meta_ids.append(cid.hex())
            if cid not in self.pending and cid not in self.index:
                self._seal(BlobType.META, cid, group)
        self.chunklist.ready.clear()

    def _drain_seals(self, limit: int) -> None:
        while self.seal_q and (self.seal_bytes > limit or self.seal_q[0][3].done()):
            btype, cid, raw_len, fut = self.seal_q.popleft()
            self.seal_bytes -= raw_len
            pack = self.packs[btype]
            pack.add(btype, cid, fut.result(), raw_len)
            if len(pack) >= self.repo.params.pack_size:
                self._flush_pack(btype)

    def _flush_pack(self, btype: BlobType) -> None:
        builder = self.packs[btype]
        if not builder.count:
            return
        self.packs[btype] = PackBuilder()
        self.upload_q.append(self.up.submit(self._finish_and_write, builder))
        while len(self.upload_q) > self.uploads:
            self._complete_upload()

    def _finish_and_write(self, builder: PackBuilder) -> tuple[str, int, list[PackEntry]]:
        """In an upload thread: naming a pack (SHA-256 of 16 MiB) and sealing its header cost as much as
        cutting it, so they stay off the main thread."""
        pack = builder.finish(self.env)
        try:
            self.repo.write_pack(pack)
        finally:
            pack.close()
        return pack.id, pack.size, pack.entries

    def _poll_uploads(self) -> None:
        while self.upload_q and self.upload_q[0].done():
            self._complete_upload()

    def _complete_upload(self) -> None:
        fut = self.upload_q[0]
        while not self.stopping:  # a slow (throttled) upload must not hold the run past its deadline
            try:
                fut.result(timeout=0.5)
                break
            except FutureTimeout:
                if self.should_stop():
                    raise _StopRequested from None
        pack_id, size, entries = self.upload_q.popleft().result()
        release_free_memory()
        self.stored_bytes += size
        self.index.add_pack(pack_id, size, entries)
        self.pending.difference_update(e.id for e in entries)
        self.unindexed.append((pack_id, size, entries))
        self.uploaded_bytes += size
        self.uploaded_packs.append(pack_id)
        self.emit(Advanced(self.done_bytes, self.new_bytes, self.uploaded_bytes))
        self.since_checkpoint += size
        if self.since_checkpoint >= self.opts.checkpoint_bytes:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Index what is uploaded, so an interrupted run's work is reused by the next one."""
        if self.unindexed:
            _, size = self.repo.write_index_segment(self.unindexed)
            self.stored_bytes += size
            self.unindexed = []
        self.since_checkpoint = 0

    def finish(self) -> None:
        self._drain_hashes(0)
        self.chunklist.finish()
        self._store_meta()
        self._drain_seals(-1)
        self._flush_pack(BlobType.DATA)
        self._flush_pack(BlobType.META)
        while self.upload_q:
            self._complete_upload()
        self.checkpoint()

    def _cancel_queued(self) -> None:
        self.stopping = True
        for fut, *_ in self.hash_q:
            fut.cancel()
        for *_, fut in self.seal_q:
            fut.cancel()
        self.hash_q.clear()
        self.seal_q.clear()

    def stop_early(self) -> None:
        """At a deadline: uploads already running finish and are indexed; queued work is dropped.

        Chunks sealed but not yet uploaded are simply sealed again by the next run; what matters is
        that the link is released soon after the deadline and that nothing uploaded is wasted.
        """
        self._cancel_queued()
        self.upload_q = deque(fut for fut in self.upload_q if not fut.cancel())  # running or done: let it finish
        while self.upload_q:
            self._complete_upload()
        self.checkpoint()

    def abort(self) -> None:
        """After a failure: keep what finished uploading (indexed), drop the rest."""
        self._cancel_queued()
        try:
            while self.upload_q:
                self._complete_upload()
            self.checkpoint()
        except Exception:  # noqa: BLE001 - the original error matters more; the next run adopts the packs
            pass

    def close(self) -> None:
        self.hash_pool.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.up.shutdown(wait=True, cancel_futures=True)
        for builder in self.packs.values():  # a stopped run's unfinished packs: sealed again next time
            builder.discard()


def adopt_orphan_packs(repo: Repository, index: ChunkIndex, listener: Listener = ignore) -> list[str]:
    """Index packs that an interrupted run uploaded but never indexed (packs carry their own header)."""
    adopted = []
    for pack_id, size in repo.list_packs().items():
        if index.has_pack(pack_id):
            continue
        try:
            entries = repo.read_pack_header(pack_id, size)
        except CorruptObject as exc:
            listener(Warning(f"ignoring unreadable unindexed pack {pack_id[:16]}: {exc}"))
            continue
        index.add_pack(pack_id, size, entries)
        adopted.append((pack_id, size, entries))
    if adopted:
        repo.write_index_segment(adopted)
    return [pack_id for pack_id, *_ in adopted]


def _partition_table(src: Source) -> dict | None:
    try:
        return read_partition_table(src.read, src.size).to_dict()
    except OSError:
        return None


def _parent_chunks(repo: Repository, index: ChunkIndex, parent: Snapshot | None,
                   listener: Listener) -> ParentChunks | None:
    """The parent snapshot's chunks, to cut along where the disk is unchanged (agent.parent_cut)."""
    if parent is None:
        return None
    try:
        return ParentChunks(load_chunk_list(repo, index, parent))
    except CorruptObject as exc:
        listener(Warning(f"not reusing the chunk boundaries of snapshot {parent.id[:8]}: {exc}"))
        return None


def _guided(cdc, parent: ParentChunks | None, repo: Repository, pipe: _Pipeline) -> GuidedCutter | None:
    if parent is None:
        return None
    return GuidedCutter(cdc, parent, repo.params.chunker.max_size,
                        lambda views: list(pipe.hash_pool.map(pipe.env.chunk_id, views)))


def _stop_reason(opts: BackupOptions, deadline_mono: float | None) -> str | None:
    if opts.stop is not None and opts.stop.is_set():
        return "stopped on request"
    if deadline_mono is not None and time.monotonic() >= deadline_mono:
        return f"deadline {opts.deadline.astimezone().strftime('%Y-%m-%d %H:%M')} reached"
    return None


def _run_record(host: str, src: Source, started: datetime, pipe: _Pipeline, reason: str, status: str,
                packs: list[str]) -> dict:
    """What `snapshots --all` shows, and the packs prune must keep until a later run completes."""
    return {
        "version": 1, "status": status, "reason": reason, "host": host, "source": src.path,
        "started": started.isoformat(), "stopped": datetime.now(timezone.utc).isoformat(),
        "source_bytes": src.size, "done_bytes": pipe.done_bytes, "new_bytes": pipe.new_bytes,
        "uploaded_bytes": pipe.uploaded_bytes, "agent_version": __version__, "packs": packs,
    }


def unfinished_runs(repo: Repository, snaps: list[Snapshot], host: str, source: str) -> list[tuple[str, dict]]:
    """Run records of this host and source that no complete snapshot has taken over yet."""
    done = superseded_runs(snaps)
    return [(n, r) for n, r in repo.list_runs()
            if n not in done and r.get("host") == host and r.get("source") == source]


def _record_failure(repo: Repository, record: dict) -> None:
    """Best effort: the run failed, maybe because the storage did; its error is what matters."""
    try:
        repo.save_run(record)
    except Exception:  # noqa: BLE001
        pass


def run_backup(repo: Repository, path: str, opts: BackupOptions | None = None,
               listener: Listener = ignore) -> BackupResult:
    """Back up `path`. Returns an incomplete result (no snapshot) when a deadline or stop request
    ends the run early; everything uploaded by then is indexed and reused by the next run."""
    opts = opts or BackupOptions()
    t0 = time.monotonic()
    started = datetime.now(timezone.utc)
    deadline_mono = None
    if opts.deadline is not None:
        deadline_mono = t0 + (opts.deadline - started).total_seconds()
    host = opts.host or socket.gethostname()
    with open_source(path, direct=opts.direct_io) as src:
        for w in src.warnings:
            listener(Warning(w))
        table = _partition_table(src)
        with repo.lock(exclusive=False, command="backup", wait=opts.lock_wait) as lock:
            index = repo.load_index()
            adopted = adopt_orphan_packs(repo, index, listener)
            recovered = len(adopted)
            all_snaps = repo.list_snapshots()
            earlier = filter_snapshots(all_snaps, host=host, source=src.path)
            resumed = unfinished_runs(repo, all_snaps, host, src.path)
            if resumed:
                kept = sum(int(r.get("uploaded_bytes", 0)) for _, r in resumed)
                listener(Warning(f"resuming {len(resumed)} unfinished run(s) of {src.path} "
                                 f"({resumed[-1][1].get('reason')}): the {kept / (1 << 20):.1f} MiB they uploaded "
                                 "are reused"))
            listener(Started("backup", src.size))
            pipe = _Pipeline(repo, index, opts, listener)
            pipe.should_stop = lambda: _stop_reason(opts, deadline_mono)
            stopped = None
            cdc = make_chunker(repo.params.chunker, repo.master.chunker_seed)
            parent = _parent_chunks(repo, index, earlier[-1] if earlier else None, listener)
            spans = split(src.size, opts.stretches, opts.stretch_min)
            head = min(repo.params.chunker.max_size, HEAD_ROOM)  # room for a block's uncut tail
            pool = BufferPool(head + BLOCK_SIZE, limit=_BUFFERS + BUFFERS_PER_STRETCH * (len(spans) - 1))
            reader = StretchReader(src, spans, pool, head, cdc, lambda: _guided(cdc, parent, repo, pipe),
                                   pipe.chunklist)
            try:
                try:
                    for item, records in reader.items(pipe.append_deferred):
                        stopped = pipe.should_stop()
                        if stopped:
                            break
                        pipe.feed(item, records)
                    if not stopped:
                        pipe.finish()
                except _StopRequested:
                    stopped = pipe.should_stop()
                if stopped:
                    pipe.stop_early()
            except BaseException as exc:
                pipe.abort()
                _record_failure(repo, _run_record(host, src, started, pipe, str(exc) or exc.__class__.__name__,
                                                  "failed", adopted + pipe.uploaded_packs))
                raise
            finally:
                pool.close()  # a reader waiting for a buffer must not hold up the stop
                reader.close()
                pipe.close()
            if stopped:
                lock.ensure_valid()
                repo.save_run(_run_record(host, src, started, pipe, stopped, "incomplete",
                                          adopted + pipe.uploaded_packs))
                listener(Finished("backup"))
                return BackupResult(None, src.path, src.size, pipe.read_bytes, pipe.zero_bytes, pipe.new_bytes,
                                    pipe.stored_bytes, pipe.chunks, pipe.new_chunks, round(time.monotonic() - t0, 3),
                                    list(src.warnings), recovered, pipe.uploaded_bytes, stopped, len(resumed))
            if src.current_size() != src.size or not src.same_object():
                raise SourceError(f"{src.path} changed size or was replaced during the backup; no snapshot was written",
                                  hint="back up a snapshot of the volume (LVM, filesystem freeze) or a quiet image")
            duration = time.monotonic() - t0
            stats = {
                "source_bytes": src.size, "read_bytes": pipe.read_bytes, "zero_bytes": pipe.zero_bytes,
                "new_bytes": pipe.new_bytes, "stored_bytes": pipe.stored_bytes, "chunks": pipe.chunks,
                "new_chunks": pipe.new_chunks, "duration_s": round(duration, 3),
                "resumed_runs": [name for name, _ in resumed],
            }
            snap = Snapshot(
                time=(opts.time or started).astimezone(timezone.utc),
                host=host,
                source={"path": src.path, "kind": src.kind, "size": src.size,
                        "identity": {k: v for k, v in src.identity.items() if k not in ("st_dev", "st_ino")}},
                size=src.size,
                digest=pipe.chunklist.digest(),
                chunk_list=pipe.meta_ids,
                tags=sorted(set(opts.tags)),
                parent=earlier[-1].id if earlier else None,
                partition_table=table,
                stats=stats,
                agent_version=__version__,
            )
            lock.ensure_valid()
            snap_id = repo.save_snapshot(snap)
    listener(Finished("backup"))
    return BackupResult(snap_id, src.path, src.size, pipe.read_bytes, pipe.zero_bytes, pipe.new_bytes,
                        pipe.stored_bytes, pipe.chunks, pipe.new_chunks, round(time.monotonic() - t0, 3),
                        list(src.warnings), recovered, pipe.uploaded_bytes, None, len(resumed))
