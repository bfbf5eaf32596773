"""Random access to a snapshot's image: read(offset, length) from its chunk list.

The chunk list is flattened once into three compact columns (start offset, kind, chunk id: 41
bytes per chunk, one record per zero run), searched with `bisect`. Chunks are fetched on demand,
authenticated like a restore's, and kept in a small LRU cache; a read that spans several chunks
fetches them in parallel, and a sequential reader gets the next chunks fetched ahead, so a slow
backend's latency overlaps. `fetched_bytes` counts what was downloaded, for `--json`.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_right
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

from agent.errors import CorruptObject
from agent.repo.chunklist import DATA
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex, Location
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot

CACHE_BYTES = 64 << 20  # decompressed chunks kept: a filesystem's metadata reads revisit a few
READ_AHEAD = 64  # at most, chunks fetched ahead of a sequential reader (16 MiB at the average chunk size)
_FIRST_AHEAD = 4  # the window starts small (metadata reads jump around) and doubles while reads follow on
_WORKERS = 12  # at most, ranged reads in flight on a network backend, to cover its round trips
_LOCAL_WORKERS = 3  # on a local disk more threads only contend for the interpreter (extraction ran 15% slower with 6)
_MAX_READ = 4 << 20  # one ranged read takes neighbouring chunks of a pack up to this size, as restore does
_GAP = 256 << 10  # and reads across gaps smaller than this
STREAM_AHEAD = 24 << 20  # image bytes a stream keeps fetched or in flight ahead of its consumer, at least


class RangeUnreadable(CorruptObject):
    """A piece of a stream's range could not be read: which range, where in it, and why."""

    def __init__(self, k: int, at: int, length: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.k, self.at, self.length = k, at, length


class SnapshotImage:
    """A read-only, thread-safe view of one snapshot's image."""

    def __init__(self, repo: Repository, index: ChunkIndex, snap: Snapshot) -> None:
        self._repo, self._index, self.snap = repo, index, snap
        self.size = snap.size
        self._starts = array("Q")
        self._kinds = bytearray()
        self._ids = bytearray()
        for ext in repo.snapshot_extents(index, snap):
            self._starts.append(ext.offset)
            self._kinds.append(ext.kind)
            self._ids += ext.id
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._inflight: dict[int, Future] = {}
        self._lock = threading.Lock()
        connections = repo.capabilities.max_connections
        local = connections <= 2  # backends.local: a disk, no round trips
        self.workers = _LOCAL_WORKERS if local else max(_LOCAL_WORKERS, min(_WORKERS, connections))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="browse")
        self._last_end = -1
        self._ahead = _FIRST_AHEAD
        self.fetched_bytes = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SnapshotImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _extent(self, i: int) -> tuple[int, int]:
        end = self._starts[i + 1] if i + 1 < len(self._starts) else self.size
        return self._starts[i], end - self._starts[i]

    def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length) of the image, clipped to its end."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        first = bisect_right(self._starts, offset) - 1
        last = bisect_right(self._starts, end - 1) - 1
        wanted = [i for i in range(first, last + 1) if self._kinds[i] == DATA]
        sequential = offset == self._last_end
        self._last_end = end
        self._ahead = min(self._ahead * 2, READ_AHEAD) if sequential else _FIRST_AHEAD
        ahead = [i for i in range(last + 1, min(last + 1 + self._ahead, len(self._starts)))
                 if self._kinds[i] == DATA] if sequential else []
        futures = {i: self._fetch_async(i) for i in wanted + ahead}
        pieces: list[bytes | memoryview] = []
        for i in range(first, last + 1):
            start, n = self._extent(i)
            lo, hi = max(offset, start), min(end, start + n)
            if self._kinds[i] == DATA:
                pieces.append(memoryview(futures[i].result())[lo - start:hi - start])
            else:
                pieces.append(bytes(hi - lo))
        return pieces[0].tobytes() if len(pieces) == 1 and isinstance(pieces[0], memoryview) else b"".join(pieces)

    def stream(self, ranges: Iterable[tuple[int, int]],
               ahead: int | None = None) -> Iterator[tuple[int, int, int, memoryview | None]]:
        """The bytes of `ranges` (offset, length) in order, as (range number, offset in that range,
        length, piece), piece None for zeros. For a reader that knows everything it will read (a
        file's extents): fetches run up to `ahead` bytes in front of the consumer, so the workers
        decompress while the consumer writes, and pieces are views of the chunks, never joined."""
        if ahead is None:  # enough to keep every worker's ranged read busy (twice that was slower on S3)
            ahead = max(STREAM_AHEAD, self.workers * _MAX_READ)
        pending: deque[tuple[int, int, int, int, Future | None]] = deque()
        queued = 0
        for k, (offset, length) in enumerate(ranges):
            end = min(offset + length, self.size)
            i = bisect_right(self._starts, offset) - 1
            while offset < end and self._starts[i] < end:
                start, n = self._extent(i)
                lo, hi = max(offset, start), min(end, start + n)
                fut = self._fetch_async(i, keep=False) if self._kinds[i] == DATA else None
                pending.append((k, lo - offset, lo - start, hi - lo, fut))
                queued += hi - lo if fut is not None else 0
                while queued > ahead:
                    item = pending.popleft()
                    queued -= 0 if item[4] is None else item[3]
                    yield self._piece(*item)
                i += 1
                if i == len(self._starts):
                    break
        while pending:
            yield self._piece(*pending.popleft())

    @staticmethod
    def _piece(k: int, at: int, skip: int, n: int, fut: Future | None) -> tuple[int, int, int, memoryview | None]:
        if fut is None:
            return k, at, n, None
        try:
            return k, at, n, memoryview(fut.result())[skip:skip + n]
        except CorruptObject as exc:
            raise RangeUnreadable(k, at, n, exc) from None

    def _fetch_async(self, i: int, keep: bool = True) -> Future:
        """The chunk's bytes, now or later. A fetch takes along the chunks after it that lie next to
        it in the same pack (up to _MAX_READ): one ranged read instead of one request per chunk,
        which is what a high-latency backend needs."""
        with self._lock:
            data = self._cache.get(i)
            if data is not None:
                self._cache.move_to_end(i)
                done: Future = Future()
                done.set_result(data)
                return done
            fut = self._inflight.get(i)
            if fut is not None:
                return fut
            group = self._group(i)
            futures: dict[int, Future] = {j: Future() for j, _ in group}
            self._inflight.update(futures)
        self._pool.submit(self._fetch, group, futures, keep)
        return futures[i]

    def _group(self, i: int) -> list[tuple[int, Location | None]]:
        """Chunk i and its successors stored right after it in the same pack (caller holds the lock)."""
        loc = self._locate(i)
        group: list[tuple[int, Location | None]] = [(i, loc)]
        if loc is None:
            return group
        end = loc.offset + loc.length
        j = i + 1
        while j < len(self._starts) and j - i <= READ_AHEAD * 4:
            if self._kinds[j] != DATA:
                j += 1
                continue
            if j in self._cache or j in self._inflight:
                break
            nxt = self._locate(j)
            if nxt is None or nxt.pack_id != loc.pack_id or not 0 <= nxt.offset - end <= _GAP \
                    or nxt.offset + nxt.length - loc.offset > _MAX_READ:
                break
            group.append((j, nxt))
            end = nxt.offset + nxt.length
            j += 1
        return group

    def _locate(self, i: int) -> Location | None:
        cid = bytes(self._ids[32 * i:32 * i + 32])
        return self._index.get(cid) or self._index.lost.get(cid)

    def _fetch(self, group: list[tuple[int, Location | None]], futures: dict[int, Future], keep: bool) -> None:
        """One ranged read for the group, then each chunk authenticated on its own: a damaged chunk
        fails only the reads that need it."""
        first = group[0][1]
        data = None
        error: BaseException | None = None
        if first is not None:
            last = group[-1][1]
            assert last is not None
            try:
                data = memoryview(self._repo.read_pack_range(first.pack_id, first.offset,
                                                             last.offset + last.length - first.offset))
                with self._lock:
                    self.fetched_bytes += len(data)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting reader
                error = exc
        for j, loc in group:
            start, n = self._extent(j)
            cid = bytes(self._ids[32 * j:32 * j + 32])
            try:
                if error is not None:
                    raise error
                if loc is None or data is None:
                    raise CorruptObject(f"chunk {cid.hex()[:16]} at image offset {start} is missing from the "
                                        "repository")
                assert first is not None
                sealed = data[loc.offset - first.offset:loc.offset - first.offset + loc.length]
                chunk = self._repo.open_blob(BlobType.DATA, cid, sealed, loc.raw_length)
                if len(chunk) != n:
                    raise CorruptObject(f"chunk {cid.hex()[:16]} at image offset {start} has the wrong length")
            except BaseException as exc:  # noqa: BLE001 - the reader that needs this chunk raises it
                with self._lock:
                    self._inflight.pop(j, None)
                futures[j].set_exception(exc)
                continue
            with self._lock:
                self._inflight.pop(j, None)
                if keep:
                    self._cache[j] = chunk
                    self._cached_bytes += len(chunk)
                    while self._cached_bytes > CACHE_BYTES and len(self._cache) > 1:
                        _, old = self._cache.popitem(last=False)
                        self._cached_bytes -= len(old)
            futures[j].set_result(chunk)


class Window:
    """A byte range of an image (one partition) as a file-like reader: what filesystem readers take."""

    def __init__(self, image: SnapshotImage, start: int, size: int) -> None:
        self.image, self.start, self.size = image, start, size

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size:
            return b""
        return self.image.read(self.start + offset, min(length, self.size - offset))
