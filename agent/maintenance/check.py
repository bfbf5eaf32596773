"""Repository check: structure always; with read_data, download and authenticate packs and name the
snapshots and image ranges a damaged pack affects."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from agent.errors import CorruptObject
from agent.progress import Advanced, Finished, Listener, Started, ignore
from agent.repo.chunklist import DATA
from agent.repo.repository import Repository
from agent.repo.writer import adopt_orphan_packs


@dataclass
class CheckReport:
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    chunks: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged_packs: dict[str, str] = field(default_factory=dict)  # pack id -> what is wrong
    affected: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # snapshot id -> image ranges

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "snapshots": self.snapshots, "packs": self.packs, "packs_read": self.packs_read,
            "chunks": self.chunks, "errors": self.errors, "warnings": self.warnings,
            "damaged_packs": self.damaged_packs,
            "affected_snapshots": {k: [list(r) for r in v] for k, v in self.affected.items()},
        }


def run_check(repo: Repository, *, read_data: bool = False, subset: float | None = None,
              part: tuple[int, int] | None = None, listener: Listener = ignore, seed: int | None = None) -> CheckReport:
    """`subset` reads a random share of the packs (a different one each run); `part=(n, t)` reads the
    n-th of t fixed slices, so t nightly runs cover every pack."""
    rep = CheckReport()
    bad_segments: list[tuple[str, str]] = []
    index = repo.load_index(bad_segments)
    for name, why in bad_segments:
        rep.errors.append(f"index segment {name[:16]} is damaged ({why}); the next backup indexes its packs "
                          "again from their headers")
    stored = repo.list_packs()
    rep.packs = len(index.pack_ids)
    for pack_id, size in zip(index.pack_ids, index.pack_sizes):
        if pack_id not in stored:
            rep.errors.append(f"pack {pack_id[:16]} is in the index but missing from storage")
            rep.damaged_packs[pack_id] = "missing"
        elif stored[pack_id] != size:
            rep.errors.append(f"pack {pack_id[:16]} has {stored[pack_id]} bytes, the index says {size}")
            rep.damaged_packs[pack_id] = "wrong size (truncated or replaced)"
    for key_id, why in repo.damaged_keys():
        rep.errors.append(f"key file {key_id[:8]} is damaged ({why}); its passphrase no longer opens the "
                          f"repository: restore it from a copy, or `agent key remove {key_id[:8]}` and add a new key")
    damaged_runs: list[str] = []
    repo.list_runs(damaged_runs)
    for name in damaged_runs:
        rep.warnings.append(f"run record {name[:8]} is damaged (it only lets an unfinished backup resume); "
                            "`agent prune` removes it")
    orphans = set(stored) - set(index.pack_ids)
    if orphans:
        rep.warnings.append(f"{len(orphans)} pack(s) not in any index (an interrupted backup, or a damaged or "
                            "lost index segment); the next backup indexes and reuses them")
        # judge the snapshots by what the packs hold, as restore and the next backup will (in memory)
        adopt_orphan_packs(repo, index, write=False)

    damaged_blobs: dict[str, set[bytes]] = {}  # pack -> the blobs known bad (else the whole pack counts)
    # read data first, so snapshot ranges can be attributed to damaged packs below
    if read_data or subset is not None or part is not None:
        packs = sorted(set(index.pack_ids) & set(stored))
        if part is not None:
            n, t = part
            packs = [p for p in packs if int(p[:8], 16) % t == n - 1]
        elif subset is not None:
            rng = random.Random(seed)
            k = max(1, round(len(packs) * subset)) if packs else 0
            packs = sorted(rng.sample(packs, min(k, len(packs))))
        listener(Started("check", sum(stored[p] for p in packs)))
        done = 0
        for pack_id in packs:
            problem, bad_ids = repo.verify_pack(pack_id)
            rep.packs_read += 1
            done += stored[pack_id]
            listener(Advanced(done))
            if problem:
                rep.damaged_packs[pack_id] = problem
                if bad_ids is not None:
                    damaged_blobs[pack_id] = bad_ids
                rep.errors.append(f"pack {pack_id[:16]} is damaged: {problem}")

    damaged_manifests: list[tuple[str, str]] = []
    snaps = repo.list_snapshots(damaged_manifests)
    for name, problem in damaged_manifests:
        rep.errors.append(f"snapshot manifest {name[:8]} is damaged ({problem}); that snapshot cannot be restored, "
                          "the others are not affected")
    rep.snapshots = len(snaps) + len(damaged_manifests)
    damaged = set(rep.damaged_packs)
    for snap in snaps:
        ranges: list[tuple[int, int]] = []
        try:
            for ext in repo.snapshot_extents(index, snap):
                if ext.kind != DATA:
                    continue
                rep.chunks += 1
                loc = index.get(ext.id)
                if loc is None:
                    rep.errors.append(f"snapshot {snap.id[:8]}: chunk at image offset {ext.offset} is not indexed")
                    ranges.append((ext.offset, ext.length))
                elif loc.pack_id in damaged and (loc.pack_id not in damaged_blobs
                                                  or ext.id in damaged_blobs[loc.pack_id]):
                    ranges.append((ext.offset, ext.length))
        except CorruptObject as exc:
            rep.errors.append(f"snapshot {snap.id[:8]}: {exc}")
            ranges.append((0, snap.size))
        if ranges:
            rep.affected[snap.id] = _merge(ranges)
    listener(Finished("check"))
    return rep


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if out and out[-1][0] + out[-1][1] >= off:
            start, length = out[-1]
            out[-1] = (start, max(start + length, off + n) - start)
        else:
            out.append((off, n))
    return out
