"""Reading the source: the blobs a copy needs, grouped by pack and coalesced into ranged reads of up
to 4 MiB, a few in flight. Every blob is authenticated, decompressed and checked against its id
before it goes on, so damage in the source is reported, never copied along."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from agent.errors import CorruptObject
from agent.repo.envelope import BlobType
from agent.repo.index import Location
from agent.repo.repository import Repository

_GAP = 256 << 10  # read across smaller gaps rather than issue another request
_MAX_READ = 4 << 20


@dataclass(frozen=True)
class Want:
    cid: bytes
    loc: Location


@dataclass(frozen=True)
class Got:
    want: Want
    sealed: bytes
    plain: bytes
    target_id: bytes | None = None  # the chunk's id in the target, when asked for (different keys)


def read_groups(wants: list[Want]) -> list[list[Want]]:
    """The ranged reads: per pack, blobs by offset, joined across gaps below _GAP up to _MAX_READ."""
    by_pack: dict[str, list[Want]] = defaultdict(list)
    for w in wants:
        by_pack[w.loc.pack_id].append(w)
    out: list[list[Want]] = []
    for blobs in by_pack.values():
        blobs.sort(key=lambda w: w.loc.offset)
        current: list[Want] = []
        for w in blobs:
            if current:
                start, end = current[0].loc.offset, current[-1].loc.offset + current[-1].loc.length
                if w.loc.offset - end <= _GAP and w.loc.offset + w.loc.length - start <= _MAX_READ:
                    current.append(w)
                    continue
                out.append(current)
            current = [w]
        if current:
            out.append(current)
    return out


def _read(repo: Repository, group: list[Want], ident: Callable[[bytes], bytes] | None) -> tuple[list[Got], int]:
    start = group[0].loc.offset
    end = group[-1].loc.offset + group[-1].loc.length
    data = repo.read_pack_range(group[0].loc.pack_id, start, end - start)
    out = []
    for w in group:
        sealed = data[w.loc.offset - start:w.loc.offset - start + w.loc.length]
        try:
            plain = repo.open_blob(BlobType(w.loc.type), w.cid, sealed, w.loc.raw_length)
        except (CorruptObject, ValueError) as exc:
            raise CorruptObject(f"source pack {w.loc.pack_id[:16]}: {exc}; nothing damaged is copied",
                                hint="run `agent check --read-data` on the source repository") from None
        out.append(Got(w, sealed, plain, ident(plain) if ident is not None else None))
    return out, end - start


def fetch(repo: Repository, wants: list[Want], threads: int,
          on_read: Callable[[int], None] = lambda n: None,
          ident: Callable[[bytes], bytes] | None = None) -> Iterator[Got]:
    """Every wanted blob, checked (and its target id computed with `ident`), in a fixed order;
    reads run `threads` at a time plus one queued."""
    groups = read_groups(wants)
    if not groups:
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="copy-read") as pool:
        queue: list[Future] = []
        it = iter(groups)
        try:
            for g in it:
                queue.append(pool.submit(_read, repo, g, ident))
                if len(queue) > threads:
                    yield from _take(queue, on_read)
            while queue:
                yield from _take(queue, on_read)
        finally:
            for f in queue:
                f.cancel()


def _take(queue: list[Future], on_read: Callable[[int], None]) -> Iterator[Got]:
    got, nbytes = queue.pop(0).result()
    on_read(nbytes)
    yield from got
