"""Parse an MBR partition table, following the EBR chain for logical partitions.

Entries and EBR links are untrusted: out-of-image partitions, loops and over-long chains
become warnings on the returned table, never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.source.bytefields import Image, u8, u32
from agent.source.filesystems import with_filesystem
from agent.source.partition_model import Partition, PartitionTable, TableFields, warn_overlaps

MAX_LOGICAL_PARTITIONS = 128
MBR_SECTOR = 512
MBR_EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
MBR_GPT_PROTECTIVE = 0xEE

MBR_TYPE_NAMES: dict[int, str] = {
    0x01: "FAT12",
    0x04: "FAT16 <32M",
    0x05: "extended",
    0x06: "FAT16",
    0x07: "NTFS/exFAT",
    0x0B: "FAT32",
    0x0C: "FAT32 (LBA)",
    0x0E: "FAT16 (LBA)",
    0x0F: "extended (LBA)",
    0x11: "hidden FAT12",
    0x14: "hidden FAT16 <32M",
    0x16: "hidden FAT16",
    0x17: "hidden NTFS/exFAT",
    0x1B: "hidden FAT32",
    0x1C: "hidden FAT32 (LBA)",
    0x1E: "hidden FAT16 (LBA)",
    0x27: "Windows recovery",
    0x42: "Windows dynamic",
    0x82: "Linux swap",
    0x83: "Linux",
    0x85: "Linux extended",
    0x8E: "Linux LVM",
    0xA5: "FreeBSD",
    0xA6: "OpenBSD",
    0xA9: "NetBSD",
    0xAF: "Apple HFS/HFS+",
    0xDA: "non-FS data",
    0xEE: "GPT protective",
    0xEF: "EFI System",
    0xFD: "Linux RAID",
}


@dataclass(frozen=True)
class MbrEntry:
    type: int
    lba: int
    sectors: int


def mbr_entries(sector: bytes) -> list[MbrEntry]:
    """All four slots, empty ones included, so a slot's index gives its partition number."""
    out = []
    for i in range(4):
        off = 446 + 16 * i
        out.append(MbrEntry(u8(sector, off + 4), u32(sector, off + 8), u32(sector, off + 12)))
    return out


def mbr_table(
    img: Image, mbr: bytes, entries: list[MbrEntry], warnings: list[str]
) -> PartitionTable:
    """Primaries numbered by slot and logicals from 5, as Linux names them (sda5, ...)."""
    sig = u32(mbr, 440)
    disk_id = f"{sig:08x}" if sig else None
    partitions: list[Partition] = []
    extended: MbrEntry | None = None
    for i, e in enumerate(entries):
        if e.type == 0 or e.sectors == 0:
            continue
        number = i + 1
        if e.type in MBR_EXTENDED_TYPES:
            if extended is not None:
                warnings.append(f"p{number}: second extended partition ignored")
                continue
            extended = e
        part = _mbr_partition(img, warnings, number, e.type, e.lba, e.sectors, disk_id)
        if part is not None:
            partitions.append(part)
    if extended is not None:
        partitions.extend(_logical_partitions(img, extended, disk_id, warnings))
    warn_overlaps([p for p in partitions if p.type_name != "extended"], warnings)
    return PartitionTable("mbr", MBR_SECTOR, disk_id, tuple(partitions), tuple(warnings))


def _mbr_partition(
    img: Image,
    warnings: list[str],
    number: int,
    ptype: int,
    lba: int,
    sectors: int,
    disk_id: str | None,
) -> Partition | None:
    start, size = lba * MBR_SECTOR, sectors * MBR_SECTOR
    if start + size > img.size:
        warnings.append(f"p{number}: extends past the end of the image; ignored")
        return None
    is_extended = ptype in MBR_EXTENDED_TYPES
    common = TableFields(
        number=number,
        start=start,
        size=size,
        type_id=f"0x{ptype:02x}",
        type_name="extended" if is_extended else MBR_TYPE_NAMES.get(ptype, "unknown"),
        name="",
        guid=f"{disk_id}-{number:02x}" if disk_id else None,
    )
    if is_extended:
        return Partition(**common, filesystem=None, fs_label=None, fs_uuid=None)
    return with_filesystem(img, **common)


def _logical_partitions(
    img: Image, extended: MbrEntry, disk_id: str | None, warnings: list[str]
) -> list[Partition]:
    """Follow the EBR chain; links are relative to the extended partition's start."""
    out: list[Partition] = []
    base, end = extended.lba, extended.lba + extended.sectors
    ebr_lba = base
    seen: set[int] = set()
    number = 5
    while True:
        if ebr_lba in seen:
            warnings.append(f"EBR chain loops back to LBA {ebr_lba}; stopped")
            break
        if not base <= ebr_lba < end:
            warnings.append(f"EBR at LBA {ebr_lba} lies outside the extended partition")
            break
        seen.add(ebr_lba)
        sector = img.read(ebr_lba * MBR_SECTOR, MBR_SECTOR)
        if sector[510:512] != b"\x55\xaa":
            if ebr_lba != base or sector.strip(b"\x00"):
                warnings.append(f"EBR at LBA {ebr_lba} has no boot signature; chain stopped")
            break
        this, link = mbr_entries(sector)[:2]
        if this.type != 0 and this.sectors != 0:
            if len(out) >= MAX_LOGICAL_PARTITIONS:
                warnings.append(
                    f"more than {MAX_LOGICAL_PARTITIONS} logical partitions; rest ignored"
                )
                break
            part = _mbr_partition(
                img, warnings, number, this.type, ebr_lba + this.lba, this.sectors, disk_id
            )
            number += 1
            if part is not None:
                out.append(part)
        if link.type not in MBR_EXTENDED_TYPES or link.sectors == 0:
            break
        ebr_lba = base + link.lba
    return out
