"""Damage records (damage/<id>): what `check` found broken, so that damage does not spread.

A backup deduplicates against the index; if the index still listed a chunk whose pack is lost or
fails authentication, every later snapshot of the same disk would reference the broken copy and
the data would never be uploaded again. So `check` records the packs (or single blobs) it proved
damaged, and `Repository.load_index` leaves them out: the next backup of a disk that still holds
the data uploads those chunks again, which heals every older snapshot that referenced them (they
name chunks by id, not by place). `repair snapshots` adds the image ranges of snapshots whose
chunks are gone for good, so listings and restores can say so before anyone needs them.

A record is advisory: losing one only means `check` has to find the damage again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

DAMAGE_VERSION = 1


@dataclass
class DamageRecord:
    #: pack id -> (what is wrong, the damaged blob ids, or None when every blob of the pack counts)
    packs: dict[str, tuple[str, frozenset[bytes] | None]] = field(default_factory=dict)
    #: snapshot id -> image ranges (offset, length) that read as lost, marked by `repair snapshots`
    snapshots: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    time: str = ""  # ISO 8601 UTC of the check or repair that wrote it: newer records win on merge

    def __bool__(self) -> bool:
        return bool(self.packs or self.snapshots)

    def blobs_of(self, pack_id: str) -> frozenset[bytes] | None:
        """The damaged blobs of a recorded pack (None: all of them)."""
        return self.packs[pack_id][1]

    def update(self, other: DamageRecord) -> None:
        """Merge a newer record: its entries win."""
        self.packs.update(other.packs)
        self.snapshots.update(other.snapshots)

    def to_json(self) -> bytes:
        packs = {p: {"why": why, "blobs": None if ids is None else sorted(i.hex() for i in ids)}
                 for p, (why, ids) in sorted(self.packs.items())}
        snaps = {s: [list(r) for r in ranges] for s, ranges in sorted(self.snapshots.items())}
        return json.dumps({"version": DAMAGE_VERSION, "time": self.time, "packs": packs, "snapshots": snaps},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DamageRecord:
        """ValueError when `raw` is not a damage record (the caller reports it as damaged)."""
        try:
            d = json.loads(raw)
        except RecursionError:  # nested past the stack: not a damage record
            raise ValueError("a damage record is nested too deeply") from None
        if not isinstance(d, dict) or d.get("version") != DAMAGE_VERSION:
            raise ValueError("not a damage record of a known version")
        packs, snaps = d.get("packs"), d.get("snapshots")
        if not isinstance(packs, dict) or not isinstance(snaps, dict):
            raise ValueError("a damage record lacks its packs or snapshots")
        if not isinstance(d.get("time", ""), str):
            raise ValueError("a damage record's time is malformed")
        rec = cls(time=d.get("time", ""))
        for pack_id, entry in packs.items():
            _hex_id(pack_id)
            if not isinstance(entry, dict) or not isinstance(entry.get("why"), str):
                raise ValueError("a damage record's pack entry is malformed")
            blobs = entry.get("blobs")
            if blobs is not None and not isinstance(blobs, list):
                raise ValueError("a damage record's blob list is malformed")
            rec.packs[pack_id] = (entry["why"], None if blobs is None else frozenset(_hex_id(b) for b in blobs))
        for snap_id, ranges in snaps.items():
            _hex_id(snap_id)
            if not isinstance(ranges, list) or not all(
                    isinstance(r, list) and len(r) == 2 and all(type(v) is int and v >= 0 for v in r) for r in ranges):
                raise ValueError("a damage record's snapshot ranges are malformed")
            rec.snapshots[snap_id] = [(r[0], r[1]) for r in ranges]
        return rec


def _hex_id(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError("a damage record names an object by a malformed id")
    return bytes.fromhex(value)  # ValueError on non-hex
