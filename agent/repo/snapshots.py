"""Snapshot manifests and how `--at`, `latest` and id prefixes pick one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.config.stamps import rfc3339
from agent.errors import CorruptObject, SnapshotNotFound, UsageError

MANIFEST_VERSION = 1
_HEX_ID = re.compile(r"[0-9a-f]{64}")


@dataclass
class Snapshot:
    time: datetime  # UTC
    host: str
    source: dict  # path, kind, size, identity
    size: int
    digest: str  # keyed BLAKE3 over the chunk-list records
    chunk_list: list[str]  # META blob ids, in order
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    partition_table: dict | None = None
    stats: dict = field(default_factory=dict)
    agent_version: str = ""
    #: set by `repair snapshots --zero-lost`: {"from": the damaged snapshot's id, "lost": [[offset, length], ...]}
    #: (those image ranges read as zeros)
    repaired: dict | None = None
    changed_during_backup: bool = False  # the image file was written while it was read: maybe inconsistent
    #: what was read and how, per partition (agent.source.reading); None in manifests written before it
    #: (everything was read). "not_backed_up": [[start, end], ...] of partitions left out; "unchanged_from":
    #: the parent whose chunk list an unchanged image file reused
    reading: dict | None = None
    #: set when the backup found this night's new data far above the source's usual and mostly
    #: incompressible (agent.backup.suspicion): what was measured and the thresholds it was measured against
    suspicious: dict | None = None
    id: str = ""  # set when stored or loaded

    @property
    def source_path(self) -> str:
        return self.source.get("path", "")

    @property
    def partitions(self) -> list[dict]:
        """The recorded partition table's entries (agent.source.partitions); empty without one."""
        table = self.partition_table or {}
        return [p for p in table.get("partitions") or [] if isinstance(p, dict)]

    def to_json(self) -> bytes:
        doc = {
            "version": MANIFEST_VERSION,
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "host": self.host,
            "source": self.source,
            "size": self.size,
            "digest": self.digest,
            "chunk_list": self.chunk_list,
            "tags": self.tags,
            "parent": self.parent,
            "partition_table": self.partition_table,
            "stats": self.stats,
            "agent_version": self.agent_version,
        }
        if self.repaired is not None:  # only then: manifests written before repair existed stay byte-identical
            doc["repaired"] = self.repaired
        if self.changed_during_backup:  # optional: absent means false, as in manifests written before it
            doc["changed_during_backup"] = True
        if self.reading is not None:
            doc["reading"] = self.reading
        if self.suspicious is not None:  # optional, as for the fields above
            doc["suspicious"] = self.suspicious
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, snapshot_id: str) -> Snapshot:
        try:
            d = json.loads(raw)
            if int(d["version"]) > MANIFEST_VERSION:
                raise CorruptObject(f"snapshot {snapshot_id[:8]} was written by a newer agent; upgrade to read it")
            time = datetime.fromisoformat(d["time"].replace("Z", "+00:00"))
            if time.utcoffset() is None:  # a naive time cannot be ordered with the others
                raise ValueError("the manifest's time names no offset")
            return _checked(cls(
                time=time.astimezone(UTC),
                host=str(d["host"]), source=dict(d["source"]), size=int(d["size"]), digest=str(d["digest"]),
                chunk_list=list(d["chunk_list"]), tags=list(d.get("tags") or []),
                parent=d.get("parent"), partition_table=d.get("partition_table"), stats=dict(d.get("stats") or {}),
                agent_version=str(d.get("agent_version", "")), repaired=_repaired(d.get("repaired")),
                changed_during_backup=d.get("changed_during_backup") is True, reading=_reading(d.get("reading")),
                suspicious=_suspicious(d.get("suspicious")), id=snapshot_id,
            ))
        # OverflowError: Infinity, or a time that leaves the calendar in UTC; RecursionError: nesting
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            raise CorruptObject(f"snapshot {snapshot_id[:8]} has a malformed manifest") from None

    def summary(self) -> dict:
        """The machine-readable listing fields (stable names: scripts rely on them)."""
        return {
            "id": self.id,
            "short_id": self.id[:8],
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "host": self.host,
            "source": self.source_path,
            "size": self.size,
            "tags": self.tags,
            "parent": self.parent,
            "new_bytes": self.stats.get("new_bytes"),
            "stored_bytes": self.stats.get("stored_bytes"),
            "repaired_from": self.repaired["from"] if self.repaired else None,
            "lost_bytes": sum(n for _, n in self.repaired["lost"]) if self.repaired else 0,
            "changed_during_backup": self.changed_during_backup,
            "read": (self.reading or {}).get("mode", "all"),
            "unchanged_from": (self.reading or {}).get("unchanged_from"),
            "suspicious": self.suspicious,
        }

    def holds(self, part: dict) -> bool:
        """False for a partition left out of this snapshot (`backup --partitions`)."""
        start = int(part.get("start", 0))
        return not any(lo <= start < hi for lo, hi in self.not_backed_up)

    @property
    def not_backed_up(self) -> list[tuple[int, int]]:
        """Image ranges of partitions left out (`backup --partitions`): not in this snapshot."""
        return [(r[0], r[1]) for r in (self.reading or {}).get("not_backed_up", [])]


def _checked(snap: Snapshot) -> Snapshot:
    """The fields code reads have the types it expects (authenticated, so only a bug writes others:
    still never crash on one). ValueError otherwise."""
    stats = snap.stats
    runs = stats.get("resumed_runs", [])
    nights = stats.get("recent_nights", [])
    if not (snap.size >= 0 and all(isinstance(x, str) and _HEX_ID.fullmatch(x) for x in snap.chunk_list)
            and all(isinstance(t, str) for t in snap.tags) and isinstance(snap.source.get("path", ""), str)
            and (snap.parent is None or isinstance(snap.parent, str))
            and (snap.partition_table is None or isinstance(snap.partition_table, dict))
            and all(isinstance(stats.get(k, 0), int) for k in ("new_bytes", "stored_bytes", "new_stored_bytes"))
            and isinstance(runs, list) and all(isinstance(r, str) for r in runs)
            and isinstance(nights, list) and all(type(n) is int for n in nights)):
        raise ValueError("malformed manifest")
    return snap


def _reading(value: object) -> dict | None:
    if value is None:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("mode"), str)
            and isinstance(value.get("partitions", []), list)
            and all(isinstance(p, dict) for p in value.get("partitions", []))
            and isinstance(value.get("not_backed_up", []), list)
            and all(isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r)
                    for r in value.get("not_backed_up", []))):
        raise ValueError("malformed reading record")
    return value


def _suspicious(value: object) -> dict | None:
    """The suspicion note: the numbers code and listings read must be numbers."""
    if value is None:
        return None
    if not (isinstance(value, dict) and all(type(value.get(k)) is int for k in ("new_bytes", "usual_bytes", "nights"))
            and all(type(value.get(k)) in (int, float) for k in ("stored_ratio", "factor"))):
        raise ValueError("malformed suspicion note")
    return value


def _repaired(value: object) -> dict | None:
    if value is None:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("from"), str) and isinstance(value.get("lost"), list)
            and all(isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r) for r in value["lost"])):
        raise ValueError("malformed repair note")
    return {"from": value["from"], "lost": [list(r) for r in value["lost"]]}


def filter_snapshots(snaps: list[Snapshot], *, host: str | None = None, source: str | None = None,
                     tags: list[str] | None = None) -> list[Snapshot]:
    out = [s for s in snaps if (host is None or s.host == host) and (source is None or s.source_path == source)]
    if tags:
        out = [s for s in out if set(tags) <= set(s.tags)]
    return sorted(out, key=lambda s: s.time)


def superseded_runs(snaps: list[Snapshot]) -> set[str]:
    """Names of run records whose uploads a complete snapshot has taken over (see `stats.resumed_runs`)."""
    return {name for s in snaps for name in s.stats.get("resumed_runs", ())}


def one_source(snaps: list[Snapshot], local_host: str | None = None) -> list[Snapshot]:
    """The snapshots of the one host and source `latest` and `--at` choose among. With several, the
    local machine's host is taken when it is one of them; otherwise (or with several sources left)
    --host and --source must say which, rather than restoring another machine's disk."""
    groups = {(s.host, s.source_path) for s in snaps}
    if len(groups) > 1 and local_host is not None and local_host in {h for h, _ in groups}:
        snaps = [s for s in snaps if s.host == local_host]
        groups = {(s.host, s.source_path) for s in snaps}
    if len(groups) > 1:
        names = ", ".join(f"{h}:{p}" for h, p in sorted(groups))
        raise UsageError(f"snapshots of several machines or sources match ({names}); choose with --host and --source")
    return snaps


def resolve(snaps: list[Snapshot], ref: str, *, local_host: str | None = None) -> Snapshot:
    """`latest` (of one host and source: see one_source) or a unique id prefix."""
    if not snaps:
        raise SnapshotNotFound("the repository has no matching snapshot")
    if ref == "latest":
        return max(one_source(snaps, local_host), key=lambda s: s.time)
    matches = [s for s in snaps if s.id.startswith(ref.lower())]
    if not matches:
        raise SnapshotNotFound(f"no snapshot with id {ref!r}")
    if len(matches) > 1:
        raise UsageError(f"snapshot id prefix {ref!r} is ambiguous ({len(matches)} matches); give more characters")
    return matches[0]


def pick_at(snaps: list[Snapshot], at: datetime, *, local_host: str | None = None) -> Snapshot:
    """Newest snapshot at or before `at`, of one host and source (see one_source)."""
    eligible = [s for s in one_source(snaps, local_host) if s.time <= at]
    if not eligible:
        raise SnapshotNotFound(f"no snapshot at or before {rfc3339(at)}")
    return max(eligible, key=lambda s: s.time)


def pick_partition(snap: Snapshot, spec: str) -> dict:
    """The partition `spec` names: `2` or `p2` (number), else a filesystem label or GPT name,
    compared without case. An unknown or ambiguous name is a usage error listing the choices."""
    parts = snap.partitions
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
        part = found[0]
        if not snap.holds(part):
            kept = ", ".join(f"p{p.get('number')}" for p in parts if snap.holds(p))
            raise UsageError(f"partition {part.get('number')} was not backed up in snapshot {snap.id[:8]} "
                             f"(it holds {kept or 'no partition'} only: `backup --partitions`)",
                             hint="pick a snapshot that holds it (`agent snapshots` shows what each read)")
        return part
    choices = ", ".join(_describe(p) for p in parts)
    what = "matches no partition" if not found else f"matches {len(found)} partitions"
    raise UsageError(f"partition {spec!r} {what} of snapshot {snap.id[:8]}; it has: {choices}",
                     hint="name a partition by its number (2 or p2), filesystem label or GPT name")


def _describe(p: dict) -> str:
    names = [n for n in (p.get("fs_label"), p.get("name")) if n]
    return f"p{p.get('number')}" + (f" ({', '.join(dict.fromkeys(names))})" if names else "")
