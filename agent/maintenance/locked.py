"""Which stored objects are under Object Lock retention now, from one listing and the retention
record (agent.repo.holds): prune leaves them for a later run instead of trying to delete them."""

from __future__ import annotations

from datetime import datetime

from agent.errors import StorageError
from agent.repo.holds import HoldRecord, held_until
from agent.repo.repository import Repository


def locked_objects(repo: Repository, now: datetime, warnings: list[str]) -> dict[str, datetime]:
    """Key -> retained until, for every object whose retention runs past `now`; empty without
    Object Lock. When the bucket's configuration cannot be read, a warning says that prune
    cannot tell locked objects apart (the storage still refuses to delete them)."""
    try:
        policy = repo.lock_policy()
    except StorageError as exc:
        warnings.append(f"cannot read the Object Lock configuration ({exc}): objects under retention are not "
                        "told apart, and deleting one may fail")
        return {}
    if policy is None:
        return {}
    record: HoldRecord = repo.load_holds()[0]
    out = {}
    for info in repo.stored_objects():
        until = held_until(info.key, info.mtime, info.etag, policy.period, record)
        if until is None or until > now:  # no upload time: assume the worst
            out[info.key] = until or datetime.max.replace(tzinfo=now.tzinfo)
    return out
