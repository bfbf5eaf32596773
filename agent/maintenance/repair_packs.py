"""`repair packs`: salvage every readable blob of damaged packs into new packs, drop the rest.

Which packs: those `check` recorded as damaged (agent.repo.damage), those the index lists but
storage lacks, and any named. Each blob is authenticated before it moves; one whose chunk is
already stored in a sound pack (a backup healed it) is not copied again. Then one index segment
replaces the old ones, and only after it is written are the damaged packs deleted (crash-safe,
like prune). Blobs that fail are gone from the index: `check` names the snapshots that used
them, a backup of a disk that still holds them uploads them again, and `repair snapshots`
marks or repairs the rest.
"""

from __future__ import annotations

from typing import Sequence

from agent.errors import CorruptObject, UsageError
from agent.maintenance.repair_report import RepairReport
from agent.progress import Advanced, Finished, Listener, Started, ignore
from agent.repo.envelope import BlobType
from agent.repo.index import ChunkIndex, encode_segment_rows
from agent.repo.packs import PackBuilder, PackEntry
from agent.repo.repository import Repository


def run_repair_packs(repo: Repository, names: Sequence[str] = (), *, dry_run: bool = False, lock_wait: float = 0.0,
                     listener: Listener = ignore) -> RepairReport:
    rep = RepairReport("packs", dry_run=dry_run)
    with repo.lock(exclusive=True, command="repair packs", wait=lock_wait):
        repo.verify_storage()
        damage, damage_names = repo.load_damage()
        index = repo.load_index(damage=damage)
        stored = repo.list_packs()
        targets = set(damage.packs) | {p for p in index.pack_ids if p not in stored}
        targets |= {_resolve(n, stored, index) for n in names}
        if not targets:
            rep.actions.append("no pack is recorded as damaged or missing; `agent check --read-data` finds damage")
            return rep
        known = index.by_pack()
        builders = {BlobType.DATA: PackBuilder(), BlobType.META: PackBuilder()}
        new_packs: list[tuple[str, int, list[PackEntry]]] = []
        listener(Started("repair", len(targets)))
        for n, pack_id in enumerate(sorted(targets), 1):
            data = repo.read_pack(pack_id) if pack_id in stored else None
            entries = known.get(pack_id, [])
            if not entries and data is not None:
                try:
                    entries = repo.read_pack_header(pack_id, len(data))
                except CorruptObject:
                    entries = []
            good, lost, elsewhere = _sort_out(repo, index, targets, data, entries)
            for e, sealed in good:
                b = builders[BlobType(e.type)]
                b.add(e.type, e.id, sealed, e.raw_length)
                if len(b) >= repo.params.pack_size and not dry_run:
                    new_packs.append(repo.store_pack(b))
                    builders[BlobType(e.type)] = PackBuilder()
            state = "missing from storage" if data is None else f"{len(data)} bytes"
            rep.actions.append(f"pack {pack_id[:16]} ({state}): salvage {len(good)} blob(s), {lost} lost, "
                               f"{elsewhere} already stored elsewhere")
            rep.count("packs")
            rep.count("blobs_salvaged", len(good))
            rep.count("blobs_lost", lost)
            listener(Advanced(n))
        listener(Finished("repair"))
        if rep.counts.get("blobs_lost"):
            rep.warnings.append(f"{rep.counts['blobs_lost']} blob(s) could not be salvaged; a backup of a disk that "
                                "still holds them uploads them again; `agent check` names the snapshots that lack "
                                "them and `agent repair snapshots` marks or repairs those")
        if dry_run:
            for b in builders.values():
                b.discard()
            return rep
        for b in builders.values():
            if b.count:
                new_packs.append(repo.store_pack(b))
            else:
                b.discard()
        pack_col = index.column("pack")
        drop = {i for i, p in enumerate(index.pack_ids) if p in targets}
        keep_rows = [r for r, p in enumerate(pack_col) if p not in drop]
        segments = repo.list_index_segments()
        repo.write_index_plain(encode_segment_rows(index, keep_rows, new_packs, segments))
        for name in segments:
            repo.delete_index_segment(name)
        for pack_id in sorted(targets & set(stored)):
            repo.delete_pack(pack_id)
        for pack_id in targets:
            damage.packs.pop(pack_id, None)
        repo.save_damage(damage, damage_names)
        rep.actions.append(f"wrote {len(new_packs)} new pack(s) and one index segment; deleted "
                           f"{len(targets & set(stored))} damaged pack(s)")
    return rep


def _sort_out(repo: Repository, index: ChunkIndex, targets: set[str], data: bytes | None,
              entries: list[PackEntry]) -> tuple[list[tuple[PackEntry, memoryview]], int, int]:
    """(blobs that authenticate, with their sealed bytes; how many are lost; how many have a
    sound copy in another pack already)."""
    good: list[tuple[PackEntry, memoryview]] = []
    lost = elsewhere = 0
    view = memoryview(data) if data is not None else None
    seen: set[bytes] = set()
    for e in entries:
        if e.id in seen:
            continue
        seen.add(e.id)
        loc = index.get(e.id)
        if loc is not None and loc.pack_id not in targets:
            elsewhere += 1
            continue
        try:
            if view is None or e.offset + e.length > len(view):
                raise CorruptObject("not stored")
            sealed = view[e.offset:e.offset + e.length]
            repo.open_blob(BlobType(e.type), e.id, sealed, e.raw_length)
        except (CorruptObject, ValueError):
            lost += 1
            continue
        good.append((e, sealed))
    return good, lost, elsewhere


def _resolve(name: str, stored: dict[str, int], index: ChunkIndex) -> str:
    """A pack named by its id or an unambiguous prefix (as `check` prints them)."""
    matches = {p for p in (*stored, *index.pack_ids) if p.startswith(name.lower())}
    if len(matches) != 1:
        raise UsageError(f"pack {name!r} matches {len(matches)} pack(s); give more of its id (as `agent check` "
                         "prints it)")
    return matches.pop()
