"""Which snapshots `forget` must keep because a suspicious night is not acknowledged yet.

A suspicious snapshot (agent.backup.suspicion) keeps two snapshots of its host and source: itself (the
evidence, and the carrier of the flag: without it nothing would remember the protection) and the
newest one before it, the last image known to predate whatever rewrote the disk. The earlier one is
found by time, not by a stored id, so the rule still holds in a copy (`agent copy`) or after
`repair snapshots`, where snapshots have other ids. An acknowledgement (`agent ack`, agent.repo.acks)
ends both.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.errors import UsageError
from agent.repo.acks import Acknowledgement
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot


@dataclass(frozen=True)
class Suspect:
    snapshot: Snapshot
    before: Snapshot | None  # the newest snapshot of its host and source before it
    acknowledged: bool


def suspects(snaps: list[Snapshot], acked: set[str]) -> list[Suspect]:
    """Every suspicious snapshot among `snaps`, oldest first, with the one it protects."""
    out = []
    for s in sorted(snaps, key=lambda x: x.time):
        if s.suspicious is None:
            continue
        earlier = [o for o in snaps if o.host == s.host and o.source_path == s.source_path and o.time < s.time]
        out.append(Suspect(s, max(earlier, key=lambda o: o.time) if earlier else None, s.id in acked))
    return out


def protected(snaps: list[Snapshot], acked: set[str]) -> dict[str, str]:
    """snapshot id -> why `forget` keeps it, for every unacknowledged suspicious night."""
    out: dict[str, str] = {}
    for sus in suspects(snaps, acked):
        if sus.acknowledged:
            continue
        out.setdefault(sus.snapshot.id, f"suspicious, not acknowledged (agent ack {sus.snapshot.id[:8]})")
        if sus.before is not None:
            out[sus.before.id] = f"last before suspicious {sus.snapshot.id[:8]}, not acknowledged"
    return out


def acknowledged_ids(repo: Repository) -> set[str]:
    """Ids of the snapshots an authentic acknowledgement names (a damaged one counts as absent)."""
    return {ack.snapshot for _, ack in repo.list_acks([])}


def acknowledge(repo: Repository, snap: Snapshot, note: str = "", host: str | None = None) -> Acknowledgement | None:
    """Record that `snap`'s suspicious night was looked at; None when it already is. A snapshot that
    was not flagged is a usage error: an ack there would protect nothing and mean nothing."""
    if snap.suspicious is None:
        raise UsageError(f"snapshot {snap.id[:8]} was not flagged suspicious; there is nothing to acknowledge",
                         hint="`agent ack` without an id lists the suspicious nights")
    if snap.id in acknowledged_ids(repo):
        return None
    ack = Acknowledgement(snapshot=snap.id, time=datetime.now(UTC).isoformat(),
                          host=host or socket.gethostname(), user=_user(), note=note)
    with repo.lock(exclusive=False, command="ack"):
        repo.save_ack(ack)
    return ack


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME
        return str(os.getuid())
