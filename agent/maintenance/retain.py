"""retain: keep every object that live snapshots use under Object Lock, cheaply, by generation.

S3 Object Lock protects each object version until a date; the bucket's default rule gives new
versions upload time + period. Left alone, the packs of a disk that never changes would lose
their protection a period after the first backup, while every snapshot still needs them. So this
step extends them, and only when due: an object whose retention ends within `margin` of now is
extended to now + `period`, all of a run's at once (a generation, agent.repo.holds). Each live
object thus costs one PutObjectRetention per (period - margin), not one per night; nothing asks
S3 for an object's retention (the listing's upload times and the record say it).

Objects only forgotten snapshots use are not extended: their retention lapses, and prune can
then delete them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.config.stamps import rfc3339
from agent.errors import AgentError, UsageError
from agent.maintenance.usage import mark_used
from agent.progress import Listener, Warning, ignore
from agent.repo import layout
from agent.repo.holds import HoldRecord, held_until
from agent.repo.repository import Repository

EXTENSIONS_IN_FLIGHT = 8  # PutObjectRetention requests at once (each is tiny)


def default_margin(period: timedelta) -> timedelta:
    """A week before the end, or a quarter of a shorter period: time for a few missed nights."""
    return min(timedelta(days=7), period / 4)


@dataclass
class RetainResult:
    mode: str = ""
    period_days: float = 0.0
    margin_days: float = 0.0
    live_objects: int = 0
    extended: int = 0  # PutObjectRetention requests sent (or, on a dry run, to send)
    until: str | None = None  # what this run extended to (RFC 3339 UTC)
    held_until: str | None = None  # the earliest retention of any live object after this run
    next_due: str | None = None  # when the next extension is due
    next_due_objects: int = 0
    overwritten: list[str] = field(default_factory=list)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def run_retain(repo: Repository, *, now: datetime, period: timedelta | None = None, margin: timedelta | None = None,
               dry_run: bool = False, lock_wait: float = 0.0, listener: Listener = ignore) -> RetainResult:
    policy = repo.lock_policy()
    if policy is None:
        raise UsageError(f"{repo.location} has no Object Lock default retention: there is nothing to extend",
                         hint="create the bucket with Object Lock and a default rule (terraform/modules/aws-s3-target)")
    period = period or policy.period
    margin = default_margin(period) if margin is None else margin
    if not timedelta(0) <= margin < period:
        raise UsageError(f"the margin ({margin}) must be shorter than the period ({period})")
    res = RetainResult(mode=policy.mode, period_days=period / timedelta(days=1),
                       margin_days=margin / timedelta(days=1), dry_run=dry_run)
    until = (now + period).replace(microsecond=0)
    res.until = rfc3339(until)
    with repo.lock(exclusive=False, command="retain", wait=lock_wait):  # prune (exclusive) waits
        index = repo.load_index()
        lost: dict[str, int] = {}
        used = mark_used(repo, index, repo.list_snapshots(), lost)
        live_packs = {index.pack_ids[p] for p, u in zip(index.column("pack"), used) if u}
        record, names = repo.load_holds()
        stored = repo.stored_objects()
        held: dict[str, datetime | None] = {}
        etags: dict[str, str] = {}
        for info in stored:
            entry = record.objects.get(info.key)
            if entry is not None and info.etag is not None and entry[1] != info.etag:
                res.overwritten.append(info.key)
            held[info.key] = held_until(info.key, info.mtime, info.etag, policy.period, record)
            etags[info.key] = info.etag or ""
        live = [i.key for i in stored if _is_live(i.key, live_packs, index.superseded)]
        res.live_objects = len(live)
        # due: lapsing within the margin (or of unknown age); never to a date earlier than it holds
        due = [k for k in live if (held[k] or now) < min(now + margin, until)]
        res.extended = len(due)
        new = HoldRecord(time=now.isoformat())  # what is still true of the old record, then this run's
        for info in stored:
            entry = record.objects.get(info.key)
            if entry is not None and entry[1] == etags[info.key] and entry[0] > now:
                new.objects[info.key] = entry
        if not dry_run and due:
            done, failure = _extend(repo, due, policy.mode, until)
            for k in done:
                new.objects[k] = (until, etags[k])
            res.extended = len(done)
            if done:
                repo.save_holds(new, names)
            if failure is not None:
                raise failure
        elif not dry_run and len(names) > 1:  # merge leftovers of interrupted runs
            repo.save_holds(new, names)
        after = sorted((new.objects[k][0] if k in new.objects else held[k] or now) for k in live)
        if after:
            first = after[0]
            res.held_until = rfc3339(first)
            res.next_due = rfc3339(first - margin)
            res.next_due_objects = after.count(first)
    if lost:
        res.warnings.append(f"{len(lost)} snapshot(s) reference chunks that are lost; `agent check` lists them")
    if res.overwritten:
        res.warnings.append(f"{len(res.overwritten)} object(s) were overwritten since their retention was extended "
                            f"(first: {res.overwritten[0]}): the earlier versions hold the data; see the recovery "
                            "drill in docs/ransomware.md")
    for w in res.warnings:
        listener(Warning(w))
    return res


def _is_live(key: str, live_packs: set[str], superseded: set[str]) -> bool:
    """Packs that a live snapshot uses; current index segments; config, keys and every manifest."""
    if key.startswith(layout.DATA):
        return layout.name_of(key) in live_packs
    if key.startswith(layout.INDEX):
        return layout.name_of(key) not in superseded
    return True


def _extend(repo: Repository, keys: list[str], mode: str, until: datetime) -> tuple[list[str], AgentError | None]:
    """Extend each key; what succeeded, and the first failure (the rest are then not sent)."""
    done: list[str] = []
    failure: AgentError | None = None
    with ThreadPoolExecutor(EXTENSIONS_IN_FLIGHT, thread_name_prefix="retain") as pool:
        futures = [(k, pool.submit(repo.extend_retention, k, mode, until)) for k in keys]
        for key, future in futures:
            try:
                future.result()
                done.append(key)
            except AgentError as exc:
                if failure is None:
                    failure = exc
                    for _, f in futures:
                        f.cancel()
    return done, failure
