"""forget: decide with a retention policy which snapshots go, and remove their manifests.

Only manifests are deleted here; the data they alone used stays until `prune` (agent.maintenance.prune).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from agent.errors import UsageError
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
                allow_empty: bool = False) -> ForgetResult:
    if policy.is_empty():
        raise UsageError("no retention policy given", hint="e.g. --keep-daily 7 --keep-weekly 4 --keep-monthly 12")
    groups: dict[tuple, list[Snapshot]] = defaultdict(list)
    for s in snaps:
        groups[group_key(s, group_by)].append(s)
    decided = {k: apply(v, policy) for k, v in sorted(groups.items())}
    if not allow_empty:
        empty = [k for k, ds in decided.items() if ds and not any(d.keep for d in ds)]
        if empty:
            names = ", ".join(":".join(k) for k in empty)
            raise UsageError(f"the policy would remove every snapshot of {names}",
                             hint="check the policy, or add --allow-empty if that is intended")
    return ForgetResult(decided)


def forget(repo: Repository, result: ForgetResult) -> None:
    for s in result.remove:
        repo.delete_snapshot(s.id)
