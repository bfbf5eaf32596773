"""The partition-table data model shared by the GPT, MBR and filesystem modules.

Kept apart from `partitions` (the entry point) so the parsers can build these records
without importing the module that imports them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, TypedDict

Scheme = Literal["gpt", "mbr", "none"]


class TableFields(TypedDict):
    """A Partition's fields that come from the partition table (the rest from the filesystem probe)."""

    number: int
    start: int
    size: int
    type_id: str
    type_name: str
    name: str
    guid: str | None


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes from the start of the image
    size: int  # bytes
    type_id: str  # GPT type GUID, or MBR type as "0x83"
    type_name: str
    name: str  # GPT partition name; "" for MBR
    guid: str | None  # GPT unique GUID, or MBR "disksig-NN" as blkid's PARTUUID
    filesystem: str | None
    fs_label: str | None
    fs_uuid: str | None
    fs_version: str | None = None  # e.g. "FAT32", "v2" (LUKS); shown in the summary


@dataclass(frozen=True)
class PartitionTable:
    scheme: Scheme
    sector_size: int
    disk_guid: str | None  # GPT disk GUID, or MBR disk signature as 8 hex digits
    partitions: tuple[Partition, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict:
        """A JSON-ready form for the snapshot manifest."""
        return {
            "scheme": self.scheme,
            "sector_size": self.sector_size,
            "disk_guid": self.disk_guid,
            "partitions": [asdict(p) for p in self.partitions],
            "warnings": list(self.warnings),
        }

    def summary(self) -> list[str]:
        """One line per partition, for listings where a user picks what to restore."""
        lines = []
        for p in self.partitions:
            parts = [
                f"p{p.number}",
                f"{human_size(p.start)}..{human_size(p.start + p.size)}",
                human_size(p.size),
                f'{p.type_name} "{p.name}"' if _name_adds_information(p) else p.type_name,
            ]
            if p.filesystem:
                fs = p.filesystem
                if p.fs_version:
                    fs += f" ({p.fs_version})"
                if p.fs_label:
                    fs += f" {p.fs_label!r}"
                parts.append(fs)
            lines.append("  ".join(parts))
        return lines


def _name_adds_information(p: Partition) -> bool:
    """Partitioners default the GPT name to the type's description; don't repeat it."""

    def norm(s: str) -> str:
        return " ".join(s.casefold().replace("partition", " ").split())

    name, kind = norm(p.name), norm(p.type_name)
    return bool(name) and name not in kind and kind not in name


def human_size(n: int) -> str:
    """Binary units, one decimal below 10 so small offsets such as 1.0 MiB stay exact-looking."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            break
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def warn_overlaps(partitions: list[Partition], warnings: list[str]) -> None:
    """Overlaps mean a damaged or hand-edited table: restoring one partition clobbers another."""
    ordered = sorted(partitions, key=lambda p: (p.start, p.number))
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.start + a.size:
            warnings.append(f"p{a.number} and p{b.number} overlap")
