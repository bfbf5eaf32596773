"""Read every chunk of a snapshot from storage as a restore would, and keep none of it.

The plan and the reads are restore's own (`agent.restore.fetch`): the same index fallbacks, the
same coalesced ranged reads, the same authentication, decompression and id check per chunk. What
a restore would write is only counted; what it could not restore is listed by image range.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agent.progress import Advanced, Finished, Listener, Started
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.restore.fetch import Blob, plan_reads, read_group
from agent.verify.result import Damage

_WORKERS = 3  # ranged reads in flight, as a restore has


def read_every_chunk(repo: Repository, snap: Snapshot, listener: Listener) -> tuple[int, int, list[Damage]]:
    """(image bytes read and sound, image bytes recorded as zeros, damaged ranges sorted by offset)."""
    plan = plan_reads(repo, snap, True, (0, snap.size), listener)
    damaged = [Damage(off, n, "chunk missing from the repository (no pack holds it)") for off, n in plan.missing]
    zero_bytes = sum(n for _, n in plan.zero_runs)
    listener(Started("verify", snap.size - zero_bytes))

    def one(pack_id: str, group: list[Blob]) -> tuple[int, list[Damage]]:
        sound, bad = 0, []
        for b, raw, problem in read_group(repo, pack_id, group, True):
            if raw is None:
                bad += [Damage(t, b.raw, problem or "damaged") for t in b.targets]
            else:
                sound += len(raw) * len(b.targets)
        return sound, bad

    done = 0
    pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="verify")
    try:
        for fut in [pool.submit(one, p, g) for p, g in plan.groups()]:
            n, bad = fut.result()
            done += n
            damaged += bad
            listener(Advanced(done))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    listener(Finished("verify"))
    return done, zero_bytes, sorted(damaged, key=lambda d: (d.offset, d.length))
