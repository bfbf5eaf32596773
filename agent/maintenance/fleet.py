"""`agent status`: every host and source that ever backed up into a repository, at a glance.

Built only from metadata a listing brings (snapshot manifests, which the local cache serves, run
records, locks and the pack listing), never from the index or the data, so it stays quick on a cloud
repository. `summarize_fleet` is pure (lists in, status out), so the flags can be tested on any mix of
hosts without a repository.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Callable

from agent.repo.locks import LockInfo
from agent.repo.runs import RunRecord
from agent.repo.snapshots import Snapshot

DEFAULT_STALE_AFTER = timedelta(hours=36)
NIGHTS = 30  # nights kept per source for the trend and the charts


@dataclass
class Night:
    """One complete snapshot, for the trend: what it added and how long it took."""

    time: str
    snapshot_id: str
    size: int
    new_bytes: int
    stored_bytes: int
    duration_s: float


@dataclass
class Problem:
    """The newest run of the source that ended without a snapshot."""

    status: str  # "failed" | "incomplete"
    reason: str
    started: str
    stopped: str
    uploaded_bytes: int


@dataclass
class SourceStatus:
    host: str
    source: str
    snapshots: int
    stale_after_s: float
    last_success: Night | None = None
    age_s: float | None = None  # of the last success; None when there was none
    last_problem: Problem | None = None
    #: True when the last problem came after the last success: the source's latest run did not finish
    problem_is_latest: bool = False
    nights: list[Night] = field(default_factory=list)  # oldest first, at most NIGHTS
    new_bytes_trend: float | None = None  # newest night's new data / median of the earlier ones
    verified: str | None = None  # when its newest snapshot last verified clean, where this machine recorded it
    flags: list[str] = field(default_factory=list)  # "stale", "failed", "incomplete", "never succeeded", "suspicious"
    #: ids of its suspicious snapshots not acknowledged yet (`agent ack`; agent.maintenance.protection)
    suspicious: list[str] = field(default_factory=list)


@dataclass
class FleetStatus:
    generated: datetime
    repository: str
    sources: list[SourceStatus]
    locks: list[dict]
    storage: list[dict]  # [{"time", "stored_bytes"}]: bytes stored, growing with every snapshot's new packs
    repository_bytes: int | None
    snapshots: int
    damaged: list[str] = field(default_factory=list)  # manifests and run records that could not be read
    #: what `agent check` recorded as damaged (agent.repo.damage): {"time", "packs", "snapshots"}; None when nothing
    check: dict | None = None

    @property
    def flagged(self) -> list[SourceStatus]:
        return [s for s in self.sources if s.flags]

    @property
    def ok(self) -> bool:
        return not self.flagged and not self.check

    def to_dict(self) -> dict:
        """What `status --json` prints and the web page shows (the same numbers: a test compares them)."""
        return {
            "generated": _iso(self.generated),
            "repository": self.repository,
            "ok": self.ok,
            "flagged": len(self.flagged),
            "hosts": len({s.host for s in self.sources}),
            "snapshots": self.snapshots,
            "repository_bytes": self.repository_bytes,
            "sources": [asdict(s) for s in self.sources],
            "locks": self.locks,
            "storage": self.storage,
            "damaged": self.damaged,
            "check": self.check,
        }


@dataclass(frozen=True)
class StalePolicy:
    """How old a source's last success may be: `default`, or the first override whose pattern
    (fnmatch, on "host" or "host:source") matches."""

    default: timedelta = DEFAULT_STALE_AFTER
    overrides: tuple[tuple[str, timedelta], ...] = ()

    def limit(self, host: str, source: str) -> timedelta:
        for pattern, limit in self.overrides:
            if fnmatchcase(host, pattern) or fnmatchcase(f"{host}:{source}", pattern):
                return limit
        return self.default


def summarize_fleet(snaps: list[Snapshot], runs: list[RunRecord], locks: list[LockInfo], now: datetime, *,
                    policy: StalePolicy = StalePolicy(), repository: str = "",
                    repository_bytes: int | None = None,
                    verified: Callable[[str, str], datetime | None] = lambda host, source: None) -> FleetStatus:
    """The fleet's status at `now` from the repository's snapshots, run records and locks."""
    groups: dict[tuple[str, str], tuple[list[Snapshot], list[RunRecord]]] = defaultdict(lambda: ([], []))
    for s in snaps:
        groups[(s.host, s.source_path)][0].append(s)
    for r in runs:
        groups[(r.host, r.source)][1].append(r)
    sources = [_source(host, source, sorted(g[0], key=lambda s: s.time), g[1], now,
                       policy.limit(host, source), verified(host, source))
               for (host, source), g in sorted(groups.items())]
    stored, storage = 0, []
    for s in sorted(snaps, key=lambda s: s.time):
        stored += int(s.stats.get("stored_bytes") or 0)
        storage.append({"time": _iso(s.time), "stored_bytes": stored})
    held = [{"host": lk.host, "pid": lk.pid, "command": lk.command, "exclusive": lk.exclusive,
             "time": _iso(lk.time), "stale": lk.is_stale(now)} for lk in sorted(locks, key=lambda lk: lk.time)]
    return FleetStatus(generated=now, repository=repository, sources=sources, locks=held, storage=storage,
                       repository_bytes=repository_bytes, snapshots=len(snaps))


def _source(host: str, source: str, snaps: list[Snapshot], runs: list[RunRecord], now: datetime,
            stale_after: timedelta, verified: datetime | None) -> SourceStatus:
    st = SourceStatus(host=host, source=source, snapshots=len(snaps), stale_after_s=stale_after.total_seconds(),
                      verified=_iso(verified) if verified else None)
    st.nights = [_night(s) for s in snaps[-NIGHTS:]]
    if snaps:
        st.last_success = st.nights[-1]
        st.age_s = round((now - snaps[-1].time).total_seconds(), 3)
    if runs:
        last = max(runs, key=lambda r: datetime.fromisoformat(r.started))
        st.last_problem = Problem(last.status, last.reason, last.started, last.stopped, last.uploaded_bytes)
        st.problem_is_latest = not snaps or datetime.fromisoformat(last.started) > snaps[-1].time
    if len(st.nights) >= 2:
        earlier = sorted(n.new_bytes for n in st.nights[:-1])
        median = earlier[len(earlier) // 2]
        st.new_bytes_trend = round(st.nights[-1].new_bytes / median, 3) if median else None
    if not snaps:
        st.flags.append("never succeeded")
    elif st.age_s is not None and st.age_s > st.stale_after_s:
        st.flags.append("stale")
    if st.problem_is_latest and st.last_problem is not None:
        st.flags.append(st.last_problem.status)
    return st


def _night(s: Snapshot) -> Night:
    return Night(time=_iso(s.time), snapshot_id=s.id, size=s.size, new_bytes=int(s.stats.get("new_bytes") or 0),
                 stored_bytes=int(s.stats.get("stored_bytes") or 0),
                 duration_s=float(s.stats.get("duration_s") or 0.0))


def read_fleet(repo, now: datetime | None = None, *, policy: StalePolicy = StalePolicy(), repository: str = "",
               verified: Callable[[str, str], datetime | None] = lambda host, source: None) -> FleetStatus:
    """Read the metadata of `repo` (an agent.repo.repository.Repository) and summarize it. Takes no
    lock and writes nothing: a status must never stop a backup or a prune."""
    from concurrent.futures import ThreadPoolExecutor

    damaged_snaps: list[tuple[str, str]] = []
    damaged_runs: list[str] = []
    with ThreadPoolExecutor(4) as pool:  # five listings, each a round trip to a cloud store: at once
        runs_f = pool.submit(repo.list_runs, damaged_runs)
        locks_f = pool.submit(repo.list_locks)
        packs_f = pool.submit(repo.list_packs)
        damage_f = pool.submit(repo.load_damage)
        acks_f = pool.submit(repo.list_acks, [])
        snaps = repo.list_snapshots(damaged_snaps)
        runs = [r for _, r in runs_f.result()]
        locks, packs = locks_f.result(), packs_f.result()
        record, _ = damage_f.result()
        acked = {ack.snapshot for _, ack in acks_f.result()}
    status = summarize_fleet(snaps, runs, locks, now or datetime.now(UTC), policy=policy, repository=repository,
                             repository_bytes=sum(packs.values()), verified=verified)
    flag_suspicious(status, snaps, acked)
    status.damaged = [f"snapshot {name[:8]}: {problem}" for name, problem in damaged_snaps]
    status.damaged += [f"run record {name[:8]} is damaged" for name in damaged_runs]
    if record:
        _flag_damage(status, snaps, record)
    return status


def flag_suspicious(status: FleetStatus, snaps: list[Snapshot], acked: set[str]) -> None:
    """Sources with a suspicious night nobody acknowledged: flagged until `agent ack`."""
    from agent.maintenance.protection import suspects

    waiting = [s.snapshot for s in suspects(snaps, acked) if not s.acknowledged]
    for src in status.sources:
        src.suspicious = [s.id for s in waiting if (s.host, s.source_path) == (src.host, src.source)]
        if src.suspicious:
            src.flags.append("suspicious")


def _flag_damage(status: FleetStatus, snaps: list[Snapshot], record) -> None:
    """What `agent check` found: damaged packs (the repository needs `agent repair packs`), and
    snapshots whose lost ranges `repair snapshots` marked, which flag their source "damaged"."""
    status.check = {"time": record.time, "packs": len(record.packs),
                    "snapshots": sorted(record.snapshots)}
    owner = {s.id: (s.host, s.source_path) for s in snaps}
    for src in status.sources:
        if any(owner.get(sid) == (src.host, src.source) for sid in record.snapshots) and "damaged" not in src.flags:
            src.flags.append("damaged")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
