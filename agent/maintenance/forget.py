"""forget: decide with a retention policy which snapshots go, and remove their manifests.

Only manifests are deleted here; the data they alone used stays until `prune` (agent.maintenance.prune).
Whatever the policy says, an unacknowledged suspicious night keeps itself and the snapshot before it
(agent.maintenance.protection); `forget` checks that again against the repository before it deletes
anything, so no caller can lose them by passing a plan made without it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from agent.errors import AgentError, UsageError
from agent.maintenance.protection import acknowledged_ids, protected
from agent.maintenance.retention import Decision, Policy, apply, group_key
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot


@dataclass
class ForgetResult:
    groups: dict[tuple, list[Decision]]

    @property
    def keep(self) -> list[Snapshot]:
        return [d.snapshot for ds in self.groups.values() for d in ds if d.keep]

    @property
    def remove(self) -> list[Snapshot]:
        return [d.snapshot for ds in self.groups.values() for d in ds if not d.keep]


def plan_forget(snaps: list[Snapshot], policy: Policy, *, group_by: tuple[str, ...] = ("host", "source"),
                allow_empty: bool = False, protected: Mapping[str, str] | None = None) -> ForgetResult:
    """What the policy keeps and removes; `protected` (snapshot id -> why, `protected_in`) are kept too."""
    if policy.is_empty():
        raise UsageError("no retention policy given", hint="e.g. --keep-daily 7 --keep-weekly 4 --keep-monthly 12")
    groups: dict[tuple, list[Snapshot]] = defaultdict(list)
    for s in snaps:
        groups[group_key(s, group_by)].append(s)
    decided = {k: apply(v, policy) for k, v in sorted(groups.items())}
    for ds in decided.values():
        for d in ds:
            if protected and d.snapshot.id in protected:
                d.keep = True
                d.reasons.append(protected[d.snapshot.id])
    if not allow_empty:
        empty = [k for k, ds in decided.items() if ds and not any(d.keep for d in ds)]
        if empty:
            names = ", ".join(":".join(k) for k in empty)
            raise UsageError(f"the policy would remove every snapshot of {names}",
                             hint="check the policy, or add --allow-empty if that is intended")
    return ForgetResult(decided)


def protected_in(repo: Repository, snaps: list[Snapshot]) -> dict[str, str]:
    """The protection of unacknowledged suspicious nights among `snaps`, with the repository's acks."""
    return protected(snaps, acknowledged_ids(repo))


def forget(repo: Repository, result: ForgetResult) -> None:
    guarded = protected_in(repo, result.keep + result.remove)
    refused = [s for s in result.remove if s.id in guarded]
    if refused:  # a caller planned without protection: a bug, and never a reason to delete
        raise AgentError(f"refusing to forget snapshot {refused[0].id[:8]}: {guarded[refused[0].id]}",
                         hint="acknowledge the suspicious night with `agent ack` first")
    for s in result.remove:
        repo.delete_snapshot(s.id)
