"""What a verify found: damaged image ranges, and one check per partition."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CLEAN, DAMAGED, NOT_CHECKED = "clean", "damaged", "not checked"


@dataclass(frozen=True)
class Damage:
    offset: int  # image bytes [offset, offset + length)
    length: int
    problem: str


@dataclass
class PartitionCheck:
    number: int | None  # None: the snapshot holds one bare filesystem (no partition table)
    label: str | None  # filesystem label, else GPT name
    filesystem: str | None
    start: int
    size: int
    status: str  # CLEAN | DAMAGED | NOT_CHECKED
    checker: str | None = None  # the command line, e.g. "e2fsck -fn"
    exit_status: int | None = None
    output: list[str] = field(default_factory=list)  # the checker's last lines
    reason: str | None = None  # why not checked, or how the partition was read
    via: str | None = None  # "fuse" | "temporary file"


@dataclass
class VerifyResult:
    snapshot_id: str
    size: int
    checked_bytes: int  # image bytes whose chunks were read and authenticated
    zero_bytes: int  # recorded as zeros: nothing stored, nothing to read
    damaged: list[Damage]
    partitions: list[PartitionCheck] | None  # None without --fsck
    duration_s: float = 0.0

    @property
    def damaged_bytes(self) -> int:
        return sum(d.length for d in self.damaged)

    @property
    def status(self) -> str:
        """DAMAGED when a chunk or a filesystem is, else CLEAN (partitions not checked do not count)."""
        if self.damaged or any(p.status == DAMAGED for p in self.partitions or ()):
            return DAMAGED
        return CLEAN

    def to_dict(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "status": self.status, "size": self.size,
                "checked_bytes": self.checked_bytes, "zero_bytes": self.zero_bytes,
                "damaged_bytes": self.damaged_bytes,
                "damaged_ranges": [asdict(d) for d in self.damaged],
                "partitions": None if self.partitions is None else [asdict(p) for p in self.partitions],
                "duration_s": self.duration_s}
