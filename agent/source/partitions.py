"""Read the partition table of a disk image into a small, readable summary.

Each snapshot manifest records what was on the disk (partitions, their types, filesystems
and labels) so a user choosing what to restore can recognise it without mounting anything.
The input is untrusted bytes from whatever disk was backed up, so every length and offset
read from the image is checked and capped: a malformed table yields scheme "none" or a
table with warnings, never an exception (other than one raised by the read callable).

This module is the entry point and the public API; the work is split by responsibility:
gpt and mbr parse the tables, filesystems probes superblocks, partition_model holds the
records and their summary, and bytefields the bounds-checked reads they all share.
"""

from __future__ import annotations

from agent.source.bytefields import Image, Reader, field, u8
from agent.source.filesystems import MAX_DIR_BYTES, PROBE_BYTES, looks_like_boot_sector
from agent.source.gpt import (
    GPT_HEADER_MIN_SIZE,
    GPT_REVISION_1_0,
    GPT_TYPE_NAMES,
    MAX_GPT_ARRAY_BYTES,
    MAX_GPT_ENTRY_SIZE,
    MAX_GPT_PARTITIONS,
    MIN_GPT_ENTRY_SIZE,
    find_gpt,
    gpt_table,
)
from agent.source.mbr import (
    MAX_LOGICAL_PARTITIONS,
    MBR_EXTENDED_TYPES,
    MBR_GPT_PROTECTIVE,
    MBR_SECTOR,
    MBR_TYPE_NAMES,
    mbr_entries,
    mbr_table,
)
from agent.source.partition_model import Partition, PartitionTable, Scheme, human_size

__all__ = [
    "GPT_HEADER_MIN_SIZE",
    "GPT_REVISION_1_0",
    "GPT_TYPE_NAMES",
    "MAX_DIR_BYTES",
    "MAX_GPT_ARRAY_BYTES",
    "MAX_GPT_ENTRY_SIZE",
    "MAX_GPT_PARTITIONS",
    "MAX_LOGICAL_PARTITIONS",
    "MBR_EXTENDED_TYPES",
    "MBR_GPT_PROTECTIVE",
    "MBR_SECTOR",
    "MBR_TYPE_NAMES",
    "MIN_GPT_ENTRY_SIZE",
    "PROBE_BYTES",
    "Partition",
    "PartitionTable",
    "Reader",
    "Scheme",
    "human_size",
    "read_partition_table",
]


def read_partition_table(read: Reader, size: int) -> PartitionTable:
    """Parse GPT (primary, else backup) or MBR (with logical partitions) from an image."""
    img = Image(read, size)
    warnings: list[str] = []
    if img.size < MBR_SECTOR:
        return PartitionTable("none", MBR_SECTOR, None, (), ())

    mbr = field(img.read(0, MBR_SECTOR), 0, MBR_SECTOR)
    has_boot_sig = mbr[510:512] == b"\x55\xaa"
    entries = mbr_entries(mbr) if has_boot_sig else []
    protective = any(e.type == MBR_GPT_PROTECTIVE for e in entries)
    looks_like_vbr = has_boot_sig and looks_like_boot_sector(mbr)

    gpt = find_gpt(img, try_backup=protective or not has_boot_sig, warnings=warnings)
    if gpt is not None:
        if not protective:
            warnings.append("GPT found but the MBR has no protective (0xEE) entry")
        elif any(e.type not in (0, MBR_GPT_PROTECTIVE) for e in entries):
            warnings.append("hybrid MBR: MBR entries besides the GPT protective one are ignored")
        return gpt_table(img, gpt, warnings)

    if protective:
        warnings.append("protective MBR (0xEE) present but no valid GPT header was found")
        return PartitionTable("none", MBR_SECTOR, None, (), tuple(warnings))
    if not has_boot_sig or looks_like_vbr:
        # No table, or a whole-disk filesystem ("superfloppy") whose boot sector also ends
        # in 55 AA; its BPB bytes are not partition entries.
        return PartitionTable("none", MBR_SECTOR, None, (), tuple(warnings))
    if any(u8(mbr, 446 + 16 * i) not in (0x00, 0x80) for i in range(4)):
        warnings.append("boot signature present but MBR partition entries are invalid")
        return PartitionTable("none", MBR_SECTOR, None, (), tuple(warnings))
    return mbr_table(img, mbr, entries, warnings)
