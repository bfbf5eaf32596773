"""The backup's middle stage: hash each cut chunk, look it up, record it in the chunk list, and
hand what the repository lacks to its writer (agent.repo.writer).

Hashing is on the critical path (the guided cutter waits for it to accept parent chunks), so it
has its own pool, apart from the writer's sealing pool: one queue put hash jobs behind up to
8 MiB of compression and starved the reader. Zero chunks are recorded, never stored.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from agent.backup.blocks import Block, Hole, is_zero
from agent.backup.options import BackupOptions
from agent.progress import Advanced, Listener
from agent.repo.chunklist import ChunkListWriter, DeferredRecords
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.writer import BlobWriter

_HASH_DEPTH = 1  # blocks hashed ahead of the dedup step

Records = ChunkListWriter | DeferredRecords
Hashed = list[tuple[int, int, memoryview, "bytes | None"]]  # offset, length, bytes, id (None: zeros)


def _hash_block(chunk_id: Callable[[memoryview], bytes], block: Block) -> Hashed:
    out: Hashed = []
    for off, length, view, known in block.chunks:
        if known is not None:  # a parent chunk, verified while cutting
            out.append((off, length, view, known))
        elif view[0] == 0 and view[-1] == 0 and is_zero(view):
            out.append((off, length, view, None))
        else:
            out.append((off, length, view, chunk_id(view)))
    return out


class Pipeline:
    """Blocks and holes in, chunk list and new blobs out; counts what progress and results show."""

    def __init__(self, repo: Repository, index: ChunkIndex, opts: BackupOptions, listener: Listener,
                 should_stop: Callable[[], str | None], before_index: Callable[[], None] = lambda: None) -> None:
        self.repo, self.emit = repo, listener
        self.hash_pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="hash")
        self.hash_q: deque[tuple[Future, Records]] = deque()
        self.writer = BlobWriter(repo, index, workers=opts.workers, uploads=opts.uploads,
                                 checkpoint_bytes=opts.checkpoint_bytes, on_upload=self._advanced,
                                 should_stop=should_stop, before_index=before_index)
        self.chunklist = repo.chunk_list_writer()
        self.meta_ids: list[str] = []
        self.read_bytes = self.zero_bytes = self.new_bytes = self.done_bytes = 0
        self.chunks = self.new_chunks = 0

    def hash_many(self, views: list[memoryview]) -> list[bytes]:
        """Ids of several chunks on the hash pool (the guided cutter checks parent chunks with it)."""
        return list(self.hash_pool.map(self.repo.chunk_id, views))

    def feed(self, item: Block | Hole, records: Records) -> None:
        """Take one block or hole; its chunk-list records go to `records` (agent.backup.reader says where)."""
        if isinstance(item, Hole):
            self._drain_hashes(0)
            records.add_zero(item.length)
            self.zero_bytes += item.length
            self.done_bytes += item.length
            return
        length = sum(c[1] for c in item.chunks)
        self.read_bytes += length
        self.done_bytes += length  # of the image, over all stretches: what progress shows
        self.hash_q.append((self.hash_pool.submit(_hash_block, self.repo.chunk_id, item), records))
        self._drain_hashes(_HASH_DEPTH)
        self.writer.poll()

    def append_deferred(self, later: DeferredRecords) -> None:
        """The stretches before `later` are done: its records follow them in the chunk list."""
        self._drain_hashes(0)
        later.replay(self.chunklist)
        self._store_meta()

    def finish(self) -> None:
        self._drain_hashes(0)
        self.chunklist.finish()
        self._store_meta()
        self.writer.finish()

    def stop_early(self) -> None:
        """At a deadline: drop queued hashing; the writer finishes running uploads and indexes them."""
        self._cancel_hashing()
        self.writer.stop_early()

    def abort(self) -> None:
        """After a failure: keep what finished uploading (indexed), drop the rest."""
        self._cancel_hashing()
        self.writer.abort()

    def close(self) -> None:
        self.hash_pool.shutdown(wait=True, cancel_futures=True)
        self.writer.close()

    def _advanced(self) -> None:
        self.emit(Advanced(self.done_bytes, self.new_bytes, self.writer.uploaded_bytes))

    def _drain_hashes(self, depth: int) -> None:
        while len(self.hash_q) > depth:
            fut, records = self.hash_q.popleft()
            hashed = fut.result()
            known = iter(self.writer.index.known([cid for *_, cid in hashed if cid is not None]))
            for _, length, view, cid in hashed:
                self.chunks += 1
                if cid is None:
                    records.add_zero(length)
                    self.zero_bytes += length
                    continue
                records.add_data(length, cid)
                if next(known) or not self.writer.add(BlobType.DATA, cid, view):
                    continue
                self.new_bytes += length
                self.new_chunks += 1
            self._store_meta()
            self._advanced()

    def _store_meta(self) -> None:
        for group in self.chunklist.ready:
            cid = self.repo.chunk_id(group)
            self.meta_ids.append(cid.hex())
            self.writer.add_if_new(BlobType.META, cid, group)
        self.chunklist.ready.clear()

    def _cancel_hashing(self) -> None:
        for fut, _ in self.hash_q:
            fut.cancel()
        self.hash_q.clear()
