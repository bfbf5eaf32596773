"""`repair index`: rebuild the index from what storage holds.

Damaged segments are dropped and the packs they covered read again from their own headers; packs
no segment lists are indexed; entries of packs storage no longer has are forgotten (their chunks
are lost: `check` names the snapshots, a backup of the disk uploads what it still holds). Packs
the readable index already describes are trusted unless `read_all_packs`, as in restic.
One segment replaces all the old ones, written before any is deleted (crash-safe).
"""

from __future__ import annotations

from agent.errors import CorruptObject
from agent.maintenance.repair_report import RepairReport
from agent.progress import Advanced, Finished, Listener, Started, ignore
from agent.repo.index import encode_segment
from agent.repo.packs import PackEntry
from agent.repo.repository import Repository


def run_repair_index(repo: Repository, *, read_all_packs: bool = False, dry_run: bool = False,
                     lock_wait: float = 0.0, listener: Listener = ignore) -> RepairReport:
    rep = RepairReport("index", dry_run=dry_run)
    with repo.lock(exclusive=True, command="repair index", wait=lock_wait):
        repo.verify_storage()
        damage, damage_names = repo.load_damage()
        bad_segments: list[tuple[str, str]] = []
        old = repo.load_index(bad_segments, damage=damage)
        segments = repo.list_index_segments()
        stored = repo.list_packs()
        known = old.by_pack()
        sizes = dict(zip(old.pack_ids, old.pack_sizes))
        for name, why in bad_segments:
            rep.actions.append(f"drop damaged index segment {name[:16]} ({why}); its packs are read again")
            rep.count("segments_damaged")
        listener(Started("repair", len(stored)))
        packs: list[tuple[str, int, list[PackEntry]]] = []
        for n, (pack_id, size) in enumerate(sorted(stored.items()), 1):
            entries = known.get(pack_id)
            if entries is None or read_all_packs or sizes.get(pack_id) != size:
                entries = _read_entries(repo, rep, pack_id, size, entries or [])
                if entries is None:
                    continue
            packs.append((pack_id, size, entries))
            listener(Advanced(n))
        missing = [p for p in old.pack_ids if p not in stored]
        for pack_id in missing:
            rep.actions.append(f"forget pack {pack_id[:16]}: the index lists it but storage does not have it")
        rep.count("packs_missing", len(missing))
        rep.count("packs", len(packs))
        rep.count("blobs", sum(len(e) for _, _, e in packs))
        listener(Finished("repair"))
        if dry_run:
            return rep
        repo.write_index_plain(encode_segment(packs, segments))
        for name in segments:
            repo.delete_index_segment(name)
        rep.actions.append(f"wrote one index segment for {len(packs)} pack(s), replacing {len(segments)}")
        gone = [p for p in damage.packs if p not in stored]
        if gone:  # their chunks are out of the index now: nothing left to keep backups from
            for p in gone:
                del damage.packs[p]
            repo.save_damage(damage, damage_names)
    return rep


def _read_entries(repo: Repository, rep: RepairReport, pack_id: str, size: int,
                  fallback: list[PackEntry]) -> list[PackEntry] | None:
    """A pack's entries from its header; from the old index when the header is damaged; None when
    neither knows (the pack stays in storage, unindexed, for `repair packs` or a later look)."""
    try:
        entries = repo.read_pack_header(pack_id, size)
    except CorruptObject as exc:
        if fallback:
            rep.actions.append(f"pack {pack_id[:16]}: header unreadable ({exc}); keep the {len(fallback)} "
                               "entries the old index had (`agent repair packs` rewrites it)")
            rep.count("headers_damaged")
            return fallback
        rep.warnings.append(f"pack {pack_id[:16]}: header unreadable ({exc}) and no readable index segment lists "
                            "it: its blobs cannot be located; it stays unindexed")
        rep.count("packs_unreadable")
        return None
    rep.count("headers_read")
    return entries
