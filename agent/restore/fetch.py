"""The read side of a restore: where each chunk of a snapshot is stored, and reading it back.

Plan: chunk list -> (pack, offset) per chunk, via the index (falling back to the packs' own
headers when segments are damaged or missing) -> grouped by pack and coalesced into ranged reads
of up to 4 MiB. Each group is then fetched with one ranged read and every chunk in it is
authenticated, decompressed and checked against its id. `restore.run` writes what comes out;
`agent verify` only counts it and lists what does not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.errors import AgentError, CorruptObject
from agent.progress import Listener, Warning
from agent.repo.chunklist import DATA, Extent
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex, Location
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.repo.writer import adopt_orphan_packs

_GAP = 256 << 10  # read across gaps smaller than this rather than issue another request
MAX_READ = 4 << 20  # per request; three in flight bound a restore's memory (8 MiB x 4 held 30 MB more, no faster)
#: per request from object storage: every request costs a round trip (and the server's per-request
#: work), so a whole 16 MiB pack is one read there; the read window keeps the memory bounded
REMOTE_READ = 16 << 20


@dataclass
class Blob:
    cid: bytes
    pack: str
    offset: int  # in pack
    length: int
    raw: int
    targets: list[int]  # image offsets


@dataclass
class ReadPlan:
    """What to fetch for one window of a snapshot's image (all offsets relative to the window)."""

    by_pack: dict[str, list[Blob]]
    zero_runs: list[tuple[int, int]]
    missing: list[tuple[int, int]]  # chunks no pack holds (only with ignore_errors)
    extents: list[Extent] = field(default_factory=list)  # the whole image's, in order (--delta, --seed)
    index: ChunkIndex | None = None  # the index the plan was made from; reads another snapshot's chunk list

    def groups(self) -> list[tuple[str, list[Blob]]]:
        """(pack, blobs) per ranged read."""
        return [(p, g) for p, blist in self.by_pack.items() for g in ranges(blist)]


def ranges(blobs: list[Blob], max_read: int = MAX_READ) -> list[list[Blob]]:
    """Blobs of one pack grouped into ranged reads of up to `max_read` bytes, across small gaps."""
    blobs.sort(key=lambda b: b.offset)
    out: list[list[Blob]] = []
    for b in blobs:
        if out:
            last = out[-1]
            start, end = last[0].offset, last[-1].offset + last[-1].length
            if b.offset - end <= _GAP and b.offset + b.length - start <= max_read:
                last.append(b)
                continue
        out.append([b])
    return out


def clip(offset: int, length: int, window: tuple[int, int]) -> tuple[int, int] | None:
    """An image range as target offsets when restoring only `window` (start, length); None outside it."""
    start, size = window
    lo, hi = max(offset, start), min(offset + length, start + size)
    return (lo - start, hi - lo) if lo < hi else None


@dataclass
class Opened:
    """A group's opened chunks, placed: views to write at target offsets (taken in batches), the
    ranges they fill, and the ranges damaged chunks would have filled (with ignore_errors)."""

    window: tuple[int, int]
    writes: list[tuple[memoryview, int]] = field(default_factory=list)
    done: list[tuple[int, int]] = field(default_factory=list)
    bad: list[tuple[int, int]] = field(default_factory=list)
    batched: int = 0  # bytes in `writes`

    def add(self, b: Blob, raw: bytes | None) -> None:
        """A chunk at each target offset it has in the window (one across the window's edge is
        fetched whole and written in part); None: damaged."""
        if raw is None:
            self.bad.extend(r for t in b.targets if (r := clip(t, b.raw, self.window)) is not None)
            return
        for t in b.targets:
            at, n = clip(t, len(raw), self.window) or (0, 0)
            if n:
                skip = at + self.window[0] - t
                self.writes.append((memoryview(raw)[skip:skip + n], at))
                self.batched += n
                self.done.append((at, n))

    def take(self) -> list[tuple[memoryview, int]]:
        """The writes added since the last take."""
        writes, self.writes, self.batched = self.writes, [], 0
        return writes

    @property
    def written(self) -> int:
        return sum(n for _, n in self.done)


def plan_reads(repo: Repository, snap: Snapshot, ignore_errors: bool, window: tuple[int, int],
               listener: Listener) -> ReadPlan:
    """The index, then the plan. Chunks the index does not know may sit in packs no segment lists
    (a damaged or lost segment): those are found from the packs' own headers, in memory, before
    anything is called missing. A second adoption finds nothing new, so each fallback below plans
    again at most once."""
    bad_segments: list[tuple[str, str]] = []
    repo.prefetch_listings("index", "damage")
    index = repo.load_index(bad_segments)
    for name, problem in bad_segments:
        listener(Warning(f"index segment {name[:16]} is damaged and ignored ({problem}); reading pack headers "
                         "instead (the next backup writes a new segment)"))

    def adopt() -> bool:
        found = adopt_orphan_packs(repo, index, listener, write=False)
        if found:
            listener(Warning(f"{len(found)} pack(s) are in no index segment; their headers were read instead "
                             "(the next backup indexes them again)"))
        return bool(found)

    extents: list[Extent] = []
    if bad_segments:
        adopt()
    try:
        blobs, zero_runs, missing = _plan(repo, index, snap, ignore_errors, window, extents)
    except CorruptObject:
        if not adopt():
            raise
        blobs, zero_runs, missing = _plan(repo, index, snap, ignore_errors, window, extents)
    if missing and adopt():
        blobs, zero_runs, missing = _plan(repo, index, snap, ignore_errors, window, extents)
    by_pack: dict[str, list[Blob]] = defaultdict(list)
    for b in blobs.values():
        by_pack[b.pack].append(b)
    return ReadPlan(dict(by_pack), zero_runs, missing, extents, index)


def _plan(repo: Repository, index: ChunkIndex, snap: Snapshot, ignore_errors: bool, window: tuple[int, int],
          extents: list[Extent]) -> tuple[dict[bytes, Blob], list[tuple[int, int]], list[tuple[int, int]]]:
    """Where each chunk of `window` is stored: (blobs by id, zero runs and ranges of missing chunks,
    both as target offsets). Only chunks that overlap the window are fetched. `extents` receives
    the image's extents."""
    blobs: dict[bytes, Blob] = {}
    zero_runs: list[tuple[int, int]] = []
    missing: list[tuple[int, int]] = []
    extents.clear()
    for ext in repo.snapshot_extents(index, snap):
        extents.append(ext)
        clipped = clip(ext.offset, ext.length, window)
        if clipped is None:
            continue
        if ext.kind != DATA:
            zero_runs.append(clipped)
            continue
        b = blobs.get(ext.id)
        if b is None:
            loc = index.get(ext.id)
            if loc is None and ext.id in index.lost and _still_sound(repo, ext.id, index.lost[ext.id]):
                loc = index.lost[ext.id]
            if loc is None:
                if not ignore_errors:
                    damaged = index.lost.get(ext.id)
                    if damaged is not None:
                        raise CorruptObject(
                            f"chunk {ext.id.hex()[:16]} at image offset {ext.offset} is lost: `agent check` found "
                            f"its pack {damaged.pack_id[:16]} damaged",
                            hint="--ignore-errors writes zeros there and restores the rest; a backup of the same "
                                 "disk uploads the chunk again if the disk still holds it")
                    raise CorruptObject(f"chunk {ext.id.hex()[:16]} at image offset {ext.offset} is missing from "
                                        "the repository")
                missing.append(clipped)
                continue
            b = blobs[ext.id] = Blob(ext.id, loc.pack_id, loc.offset, loc.length, loc.raw_length, [])
        b.targets.append(ext.offset)
    return blobs, zero_runs, missing


def _still_sound(repo: Repository, cid: bytes, loc: Location) -> bool:
    """Whether a copy `check` recorded as damaged authenticates after all: when there is no other
    copy it is tried, since a record may be stale or forged (docs/security.md)."""
    try:
        repo.open_blob(BlobType(loc.type), cid, repo.read_pack_range(loc.pack_id, loc.offset, loc.length),
                       loc.raw_length)
    except (CorruptObject, ValueError):
        return False
    return True


def read_group(repo: Repository, pack_id: str, group: list[Blob],
               ignore_errors: bool) -> Iterator[tuple[Blob, bytes | None, str | None]]:
    """One ranged read for the group, then each chunk authenticated, decompressed and checked
    against its id: (blob, its bytes, None), or with ignore_errors (blob, None, what is wrong) for
    a damaged one. Without ignore_errors a damaged chunk raises CorruptObject naming its range."""
    data, unreadable = read_range(repo, pack_id, group, ignore_errors)
    return open_chunks(repo, pack_id, group, data, unreadable, ignore_errors)


def read_range(repo: Repository, pack_id: str, group: list[Blob], ignore_errors: bool) -> tuple[bytes | None, str]:
    """The group's range of its pack: (its bytes, ""), or with ignore_errors (None, why it cannot
    be read). Without ignore_errors a read that fails raises."""
    start = group[0].offset
    end = group[-1].offset + group[-1].length
    try:
        return repo.read_pack_range(pack_id, start, end - start), ""
    except AgentError as exc:
        if not ignore_errors:
            raise
        return None, f"pack {pack_id[:16]} unreadable ({exc})"


def open_chunks(repo: Repository, pack_id: str, group: list[Blob], data: bytes | memoryview | None,
                unreadable: str, ignore_errors: bool) -> Iterator[tuple[Blob, bytes | None, str | None]]:
    """Each chunk of a group read by `read_range` (`data` from the group's first offset, or None
    and why) authenticated, decompressed and checked against its id, as `read_group` yields them."""
    start = group[0].offset
    view = memoryview(data) if data is not None else None
    for b in group:
        try:
            if view is None:
                raise CorruptObject(unreadable)
            raw = repo.open_blob(BlobType.DATA, b.cid, view[b.offset - start:b.offset - start + b.length], b.raw)
        except CorruptObject as exc:
            if not ignore_errors:
                raise CorruptObject(f"pack {pack_id[:16]}: {exc}; image bytes {b.targets[0]}.."
                                    f"{b.targets[0] + b.raw} cannot be restored",
                                    hint="run `agent check --read-data`; --ignore-errors writes zeros there "
                                         "and lists the damaged ranges") from None
            yield b, None, str(exc)
            continue
        yield b, raw, None
