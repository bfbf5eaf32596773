"""Repository statistics: raw versus stored size, deduplication, per host and source."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from agent.maintenance.usage import mark_used
from agent.repo.repository import Repository


@dataclass
class GroupStats:
    host: str
    source: str
    snapshots: int
    latest_size: int
    logical_bytes: int  # sum of image sizes over all its snapshots
    unique_raw_bytes: int  # raw bytes of the distinct chunks its snapshots use


@dataclass
class RepoStats:
    snapshots: int = 0
    packs: int = 0
    stored_bytes: int = 0  # packs as stored (compressed, encrypted)
    raw_bytes: int = 0  # distinct chunks, uncompressed
    logical_bytes: int = 0  # all snapshots' image sizes added up
    groups: list[GroupStats] = field(default_factory=list)

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 0.0

    def to_dict(self) -> dict:
        return {"snapshots": self.snapshots, "packs": self.packs, "stored_bytes": self.stored_bytes,
                "raw_bytes": self.raw_bytes, "logical_bytes": self.logical_bytes,
                "dedup_ratio": round(self.dedup_ratio, 2), "groups": [vars(g) for g in self.groups]}


def repo_stats(repo: Repository) -> RepoStats:
    index = repo.load_index()
    snaps = repo.list_snapshots()
    raw = index.column("raw")
    st = RepoStats(snapshots=len(snaps), packs=len(index.pack_ids), stored_bytes=int(sum(index.pack_sizes)),
                   raw_bytes=sum(raw), logical_bytes=sum(s.size for s in snaps))
    groups = defaultdict(list)
    for s in snaps:
        groups[(s.host, s.source_path)].append(s)
    for (host, source), members in sorted(groups.items()):
        used = mark_used(repo, index, members, lost={})  # chunks lost to damage take no space: not counted
        st.groups.append(GroupStats(host, source, len(members), max(members, key=lambda s: s.time).size,
                                    sum(s.size for s in members), sum(n for n, u in zip(raw, used) if u)))
    return st
