"""The repository's write path: new blobs -> sealing pool -> pack builders -> upload pool -> index
checkpoints.

The backup engine decides what a chunk is and whether the repository lacks it; from there this
module owns the bytes: it keeps the set of blobs being written (so a chunk seen twice in one run is
stored once), seals blobs on a small pool (zstd and AES-GCM release the GIL), fills one pack per
blob type, names and uploads packs on their own pool, and writes an index segment every
`checkpoint_bytes` so an interrupted run's uploads are reused by the next one.

Memory stays flat: at most `SEAL_BYTES` of raw data wait for sealing, and at most `uploads` packs
are in flight (each spooled to an unnamed temporary file, agent.repo.packs).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Callable

from agent.allocator import release_free_memory
from agent.errors import CorruptObject
from agent.progress import Listener, Warning, ignore
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex, Location
from agent.repo.packs import PackBuilder, PackEntry

if TYPE_CHECKING:
    from agent.repo.repository import Repository

#: raw bytes being compressed and sealed at once: keeps two threads busy; 8 MiB held 4 MB more
SEAL_BYTES = 4 << 20

IndexedPack = tuple[str, int, list[PackEntry]]  # pack id, size, entries


class StopRequested(Exception):
    """Raised while waiting on a slow (throttled) upload when the caller's `should_stop` says so."""


class BlobWriter:
    """Writes new blobs of one run into packs and indexes them. Not thread-safe: one caller thread."""

    def __init__(self, repo: Repository, index: ChunkIndex, *, workers: int, uploads: int,
                 checkpoint_bytes: int, on_upload: Callable[[], None] = lambda: None,
                 should_stop: Callable[[], str | None] = lambda: None,
                 before_index: Callable[[], None] = lambda: None) -> None:
        self._repo, self.index = repo, index
        self._seal_pool = ThreadPoolExecutor(workers, thread_name_prefix="seal")
        self.uploads = uploads or min(4, repo.capabilities.max_connections)
        self._upload_pool = ThreadPoolExecutor(self.uploads, thread_name_prefix="upload")
        self._checkpoint_bytes = checkpoint_bytes
        self._on_upload, self._should_stop = on_upload, should_stop
        #: raises when the run may no longer index (its lock was removed: a prune may have deleted
        #: the packs, and a segment naming them would make later backups deduplicate against nothing)
        self._before_index = before_index
        self._pending: set[bytes] = set()  # sealed or being sealed, not yet indexed
        self._seal_q: deque[tuple[BlobType, bytes, int, Future]] = deque()
        self._seal_bytes = 0
        self._upload_q: deque[Future] = deque()  # each yields an IndexedPack
        self._packs = {BlobType.DATA: PackBuilder(), BlobType.META: PackBuilder()}
        self._unindexed: list[IndexedPack] = []
        self._since_checkpoint = 0
        self._index_job: Future | None = None  # the index segment being written (checkpoint)
        self._stopping = False
        self.stored_bytes = self.uploaded_bytes = 0  # stored: packs and index segments
        #: raw and sealed (compressed, encrypted) sizes of the new data blobs packed so far: how compressible
        #: this run's new data is, which a suspicious night (mostly incompressible) is judged by
        self.new_data_raw = self.new_data_sealed = 0
        self.uploaded_packs: list[str] = []

    # ---- what the engine calls ------------------------------------------------------------------
    def add(self, btype: BlobType, cid: bytes, data: bytes | memoryview) -> bool:
        """Seal and store `data` unless this run already is; the caller checked the index
        (ChunkIndex.known in batches). False when the blob was already on its way."""
        if cid in self._pending:
            return False
        self._pending.add(cid)
        self._seal_q.append((btype, cid, len(data), self._seal_pool.submit(self._repo.seal_blob, btype, cid, data)))
        self._seal_bytes += len(data)
        self._drain_seals(SEAL_BYTES)
        return True

    def add_sealed(self, btype: BlobType, cid: bytes, sealed: bytes | memoryview, raw_length: int) -> bool:
        """`add` for a blob sealed already, for this repository (a copy from a replica of it)."""
        if cid in self._pending:
            return False
        self._pending.add(cid)
        done: Future = Future()
        done.set_result(sealed)
        self._seal_q.append((btype, cid, raw_length, done))
        self._seal_bytes += raw_length
        self._drain_seals(SEAL_BYTES)
        return True

    def add_pack(self, store: Callable[[], IndexedPack], ids: list[bytes]) -> None:
        """A whole pack that `store` uploads as it is (a copy from a replica), on the upload pool;
        indexed like the packs this writer builds. `ids`: its blobs, which `add` then skips."""
        self._pending.update(ids)
        self._upload_q.append(self._upload_pool.submit(store))
        while len(self._upload_q) > self.uploads:
            self._complete_upload()

    def add_if_new(self, btype: BlobType, cid: bytes, data: bytes | memoryview) -> bool:
        """`add`, checking the index first (for the odd metadata blob; data chunks come in batches)."""
        return cid not in self.index and self.add(btype, cid, data)

    def poll(self) -> None:
        """Index uploads that have finished, without waiting."""
        while self._upload_q and self._upload_q[0].done():
            self._complete_upload()

    def finish(self) -> None:
        """Seal, pack, upload and index everything added."""
        self._drain_seals(-1)
        self._flush_pack(BlobType.DATA)
        self._flush_pack(BlobType.META)
        while self._upload_q:
            self._complete_upload()
        self.checkpoint()

    def checkpoint(self, wait: bool = True) -> None:
        """Index what is uploaded, so an interrupted run's work is reused by the next one. Without
        `wait` the segment is written in the upload pool, beside the data uploads, so a long round
        trip does not stall reading and cutting; the next checkpoint waits for it first (one at a
        time, in order, and its failure is raised there)."""
        self._wait_index()
        if self._unindexed:
            batch, self._unindexed = self._unindexed, []
            self._index_job = self._upload_pool.submit(self._write_index, batch)
            if wait:
                self._wait_index()
        self._since_checkpoint = 0

    def _write_index(self, batch: list) -> int:
        self._before_index()
        return self._repo.write_index_segment(batch)[1]

    def _wait_index(self) -> None:
        job, self._index_job = self._index_job, None
        if job is not None:
            self.stored_bytes += job.result()

    def stop_early(self) -> None:
        """At a deadline: uploads already running finish and are indexed; queued work is dropped.

        Chunks sealed but not yet uploaded are simply sealed again by the next run; what matters is
        that the link is released soon after the deadline and that nothing uploaded is wasted.
        """
        self._cancel_queued()
        self._upload_q = deque(fut for fut in self._upload_q if not fut.cancel())  # running or done: finish
        while self._upload_q:
            self._complete_upload()
        self.checkpoint()

    def abort(self) -> None:
        """After a failure: keep what finished uploading (indexed), drop the rest."""
        self._cancel_queued()
        try:
            while self._upload_q:
                self._complete_upload()
            self.checkpoint()
        except Exception:  # noqa: BLE001 - the original error matters more; the next run adopts the packs
            pass

    def close(self) -> None:
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._upload_pool.shutdown(wait=True, cancel_futures=True)
        for builder in self._packs.values():  # a stopped run's unfinished packs: sealed again next time
            builder.discard()

    # ---- inside ----------------------------------------------------------------------------------
    def _drain_seals(self, limit: int) -> None:
        while self._seal_q and (self._seal_bytes > limit or self._seal_q[0][3].done()):
            btype, cid, raw_len, fut = self._seal_q.popleft()
            self._seal_bytes -= raw_len
            pack = self._packs[btype]
            sealed = fut.result()
            if btype == BlobType.DATA:
                self.new_data_raw += raw_len
                self.new_data_sealed += len(sealed)
            pack.add(btype, cid, sealed, raw_len)
            if len(pack) >= self._repo.params.pack_size:
                self._flush_pack(btype)

    def _flush_pack(self, btype: BlobType) -> None:
        builder = self._packs[btype]
        if not builder.count:
            return
        self._packs[btype] = PackBuilder()
        # naming a pack (SHA-256 of 16 MiB) and sealing its header cost as much as cutting it, so
        # they happen in the upload thread, off the caller's
        self._upload_q.append(self._upload_pool.submit(self._repo.store_pack, builder))
        while len(self._upload_q) > self.uploads:
            self._complete_upload()

    def _complete_upload(self) -> None:
        fut = self._upload_q[0]
        while not self._stopping:  # a slow (throttled) upload must not hold the run past its deadline
            try:
                fut.result(timeout=0.5)
                break
            except FutureTimeout:
                if self._should_stop():
                    raise StopRequested from None
        pack_id, size, entries = self._upload_q.popleft().result()
        release_free_memory()
        self.stored_bytes += size
        self.index.add_pack(pack_id, size, entries)
        self._pending.difference_update(e.id for e in entries)
        self._unindexed.append((pack_id, size, entries))
        self.uploaded_bytes += size
        self.uploaded_packs.append(pack_id)
        self._on_upload()
        self._since_checkpoint += size
        if self._since_checkpoint >= self._checkpoint_bytes:
            self.checkpoint(wait=False)

    def _cancel_queued(self) -> None:
        self._stopping = True
        for *_, fut in self._seal_q:
            fut.cancel()
        self._seal_q.clear()


def adopt_orphan_packs(repo: Repository, index: ChunkIndex, listener: Listener = ignore, *,
                       write: bool = True) -> list[str]:
    """Index packs that an interrupted run uploaded but never indexed, or whose index segment is
    damaged (packs carry their own header). `write=False` adds them to `index` only, for readers
    (restore, check) that must not write to the repository."""
    adopted: list[IndexedPack] = []
    for pack_id, size in repo.list_packs().items():
        if index.has_pack(pack_id):
            continue
        try:
            entries = repo.read_pack_header(pack_id, size)
        except CorruptObject as exc:
            listener(Warning(f"ignoring unreadable unindexed pack {pack_id[:16]}: {exc}"))
            continue
        adopted.append((pack_id, size, entries))
        if pack_id in index.damaged:  # recorded damaged: indexed, but never deduplicated against
            bad = index.damaged[pack_id]
            for e in entries:
                if bad is None or e.id in bad:
                    index.lost[e.id] = Location(pack_id, e.type, e.offset, e.length, e.raw_length)
            entries = [e for e in entries if bad is not None and e.id not in bad]
        index.add_pack(pack_id, size, entries)
    if adopted and write:
        repo.write_index_segment(adopted)
    return [pack_id for pack_id, *_ in adopted]
