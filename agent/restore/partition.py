"""Which partition of a snapshot a user means: by number, filesystem label or GPT name.

The partition table recorded in the snapshot's manifest (agent.source.partitions) says where
each partition lies, so one partition is restored or browsed by fetching only its range.
"""

from __future__ import annotations

from agent.errors import UsageError
from agent.repo.snapshots import Snapshot


def partitions_of(snap: Snapshot) -> list[dict]:
    """The recorded partitions (empty for a snapshot without a partition table)."""
    table = snap.partition_table or {}
    return [p for p in table.get("partitions") or [] if isinstance(p, dict)]


def pick_partition(snap: Snapshot, spec: str) -> dict:
    """The partition `spec` names: `2` or `p2` (number), else a filesystem label or GPT name,
    compared without case. An unknown or ambiguous name is a usage error listing the choices."""
    parts = partitions_of(snap)
    if not parts:
        raise UsageError(f"snapshot {snap.id[:8]} has no partition table (a partition or a bare filesystem was "
                         "backed up); restore or browse the whole image instead")
    number = spec[1:] if spec[:1] in ("p", "P") and spec[1:].isdigit() else spec
    if number.isdigit():
        found = [p for p in parts if p.get("number") == int(number)]
    else:
        want = spec.casefold()
        found = [p for p in parts if want in (str(p.get("fs_label") or "").casefold(), str(p.get("name") or "")
                                              .casefold())]
    if len(found) == 1:
        return found[0]
    choices = ", ".join(_describe(p) for p in parts)
    what = "matches no partition" if not found else f"matches {len(found)} partitions"
    raise UsageError(f"partition {spec!r} {what} of snapshot {snap.id[:8]}; it has: {choices}",
                     hint="name a partition by its number (2 or p2), filesystem label or GPT name")


def _describe(p: dict) -> str:
    names = [n for n in (p.get("fs_label"), p.get("name")) if n]
    return f"p{p.get('number')}" + (f" ({', '.join(dict.fromkeys(names))})" if names else "")
