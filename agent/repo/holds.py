"""Retention records (retention/<id>): until when the agent extended each object's Object Lock.

S3 tells an object's retention only per object (GetObjectRetention, one request each). The agent
needs it for every object, every night: to extend what is about to lapse, and so that prune never
tries to delete what is still locked. It is known without asking: a version that was never
extended holds its upload time plus the bucket's default period (the listing gives the upload
time), and the extensions are recorded here, grouped into generations (one per extension run, all
extended to the same date). An entry is bound to the ETag the object had when it was extended: an
object overwritten since is a different version, whose retention is its own upload's.

Only the maintenance principal may write this prefix (terraform/modules/aws-s3-target/iam.tf): a
record forged by a compromised backup host could otherwise postpone extensions until locks lapse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

HOLDS_VERSION = 1


@dataclass
class HoldRecord:
    #: object key -> (retained until, its ETag when extended)
    objects: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    time: str = ""  # ISO 8601 UTC of the run that wrote it: the newest record is the one read

    def generations(self) -> dict[datetime, list[str]]:
        """Keys grouped by the date they are retained until, soonest first."""
        out: dict[datetime, list[str]] = {}
        for key, (until, _) in sorted(self.objects.items(), key=lambda kv: kv[1][0]):
            out.setdefault(until, []).append(key)
        return out

    def to_json(self) -> bytes:
        gens = [{"until": until.isoformat(), "objects": {k: self.objects[k][1] for k in sorted(keys)}}
                for until, keys in self.generations().items()]
        return json.dumps({"version": HOLDS_VERSION, "time": self.time, "generations": gens},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> HoldRecord:
        """ValueError when `raw` is not a retention record."""
        try:
            d = json.loads(raw)
        except RecursionError:
            raise ValueError("a retention record is nested too deeply") from None
        if not isinstance(d, dict) or d.get("version") != HOLDS_VERSION or not isinstance(d.get("time", ""), str):
            raise ValueError("not a retention record of a known version")
        gens = d.get("generations")
        if not isinstance(gens, list):
            raise ValueError("a retention record lacks its generations")
        rec = cls(time=d.get("time", ""))
        for gen in gens:
            if not isinstance(gen, dict) or not isinstance(gen.get("until"), str) or not isinstance(gen.get("objects"),
                                                                                                    dict):
                raise ValueError("a retention record's generation is malformed")
            until = datetime.fromisoformat(gen["until"])
            if until.tzinfo is None:
                raise ValueError("a retention record's date has no time zone")
            for key, etag in gen["objects"].items():
                if not isinstance(key, str) or not isinstance(etag, str):
                    raise ValueError("a retention record's object entry is malformed")
                rec.objects[key] = (until, etag)
        return rec


def held_until(key: str, mtime: datetime | None, etag: str | None, period: timedelta,
               record: HoldRecord) -> datetime | None:
    """Until when the current version of `key` is retained: its recorded extension when the ETag
    still matches, else its upload time plus the default period. None when the storage gave no
    upload time (then nothing is known, and the object counts as due)."""
    default = mtime + period if mtime is not None else None
    entry = record.objects.get(key)
    if entry is None or etag is None or entry[1] != etag:
        return default
    return entry[0] if default is None else max(entry[0], default)
