"""Acknowledgements (acks/<id>): an admin's word that a suspicious night was looked at.

A night flagged suspicious (its snapshot's `suspicious` note, agent.backup.suspicion) keeps itself and
the snapshot before it out of `forget` until it is acknowledged: that earlier snapshot is the last
one known to predate the change, what a restore after ransomware needs. The acknowledgement is
sealed with the repository key like every other object, so storage credentials alone (the
ransomware's reach on a backup host with write-only keys) cannot forge one; an ack that does not
authenticate counts as absent, which keeps the protection.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

ACK_VERSION = 1


@dataclass(frozen=True)
class Acknowledgement:
    snapshot: str  # the full id of the suspicious snapshot
    time: str      # ISO 8601 with offset: when it was acknowledged
    host: str      # where `agent ack` ran
    user: str
    note: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"version": ACK_VERSION, **asdict(self)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Acknowledgement:
        """ValueError when `raw` is not an acknowledgement (the caller reports it as damaged)."""
        try:
            d = json.loads(raw)
        except RecursionError:
            raise ValueError("an acknowledgement is nested too deeply") from None
        if not isinstance(d, dict) or d.get("version") != ACK_VERSION:
            raise ValueError("not an acknowledgement of a known version")
        values = {k: d.get(k, "") for k in ("snapshot", "time", "host", "user", "note")}
        if not all(isinstance(v, str) for v in values.values()) or len(values["snapshot"]) != 64:
            raise ValueError("an acknowledgement is malformed")
        bytes.fromhex(values["snapshot"])  # ValueError when not hex
        if datetime.fromisoformat(values["time"]).utcoffset() is None:
            raise ValueError("an acknowledgement's time names no offset")
        return cls(**values)
