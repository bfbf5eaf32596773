"""Parse a GUID Partition Table: primary header, else the backup at the end of the disk.

Headers and the entry array are CRC-checked and every size read from them is capped, since
the image is untrusted; problems become warnings on the returned table, never exceptions.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from agent.source.bytefields import Image, field, guid_le, u32, u64
from agent.source.filesystems import with_filesystem
from agent.source.partition_model import Partition, PartitionTable, warn_overlaps

MAX_GPT_PARTITIONS = 256  # used entries reported; real tables have 128 slots
MAX_GPT_ARRAY_BYTES = 1 << 20  # bounds the one read of the entry array
MIN_GPT_ENTRY_SIZE = 128
MAX_GPT_ENTRY_SIZE = 4096
GPT_HEADER_MIN_SIZE = 92
GPT_REVISION_1_0 = 0x00010000

GPT_TYPE_NAMES: dict[str, str] = {
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
    "024DEE41-33E7-11D3-9D69-0008C781F39F": "MBR partition scheme",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
    "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
    "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
    "3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux server data",
    "4D21B016-B534-45C2-A9FB-5C16E091FD2D": "Linux variable data",
    "CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
    "7FFEC5C9-2D00-49B7-8941-3EA10A5586B7": "Linux dm-crypt",
    "8DA63339-0007-60C0-C436-083AC8230908": "Linux reserved",
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
    "44479540-F297-41B2-9AF7-D131D5F0458A": "Linux root (x86)",
    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM64)",
    "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "Linux root (ARM)",
    "BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
    "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery",
    "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Windows LDM metadata",
    "AF9B60A0-1431-4F62-BC68-3311714A69AD": "Windows LDM data",
    "D3BFE2DE-3DAF-11DF-BA40-E3A556D89593": "Intel Rapid Start",
    "48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS+",
    "7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
    "426F6F74-0000-11AA-AA11-00306543ECAC": "Apple boot",
    "6A898CC3-1DD2-11B2-99A6-080020736631": "ZFS",
    "83BD6B9D-7F41-11DC-BE0B-001560B84F0F": "FreeBSD boot",
    "516E7CB4-6ECF-11D6-8FF8-00022D09712B": "FreeBSD disklabel",
    "516E7CB5-6ECF-11D6-8FF8-00022D09712B": "FreeBSD swap",
    "516E7CB6-6ECF-11D6-8FF8-00022D09712B": "FreeBSD UFS",
    "516E7CBA-6ECF-11D6-8FF8-00022D09712B": "FreeBSD ZFS",
    "AA31E02A-400F-11DB-9590-000C2911D1B8": "VMware VMFS",
}


@dataclass(frozen=True)
class GptHeader:
    """A header that passed every check, with its entry array read and CRC-verified."""

    sector_size: int
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: str
    entries_lba: int
    num_entries: int
    entry_size: int
    entries: bytes


def find_gpt(img: Image, *, try_backup: bool, warnings: list[str]) -> GptHeader | None:
    """Primary header at LBA 1 for 512 then 4096-byte sectors; else the backup at the end."""
    problems: list[str] = []
    for ss in (512, 4096):
        hdr, why = _read_gpt_header(img, ss, 1)
        if hdr is not None:
            _check_backup(img, hdr, warnings)
            return hdr
        if why != "no signature":
            problems.append(f"{ss}-byte sectors: {why}")
    if not try_backup:
        if problems:
            warnings.append("GPT header ignored: " + "; ".join(problems))
        return None
    for ss in (512, 4096):
        last = img.size // ss - 1
        if last < 2:
            continue
        hdr, why = _read_gpt_header(img, ss, last)
        if hdr is not None:
            reason = "; ".join(problems) if problems else "missing"
            warnings.append(
                f"primary GPT header invalid ({reason}); using the backup header at LBA {last}"
            )
            return hdr
    if problems:
        warnings.append("GPT header invalid: " + "; ".join(problems))
    return None


def _check_backup(img: Image, primary: GptHeader, warnings: list[str]) -> None:
    """Note a damaged or misplaced backup: restoring to a different-size disk cares."""
    ss = primary.sector_size
    last = img.size // ss - 1
    alt = primary.alternate_lba
    if alt <= 1 or alt > last:
        warnings.append(f"backup GPT header location LBA {alt} is outside the image")
        return
    hdr, why = _read_gpt_header(img, ss, alt)
    if hdr is None:
        warnings.append(f"backup GPT header at LBA {alt} is invalid ({why})")
    elif alt != last:
        warnings.append(
            f"backup GPT header is at LBA {alt}, not at the last LBA {last} (image resized?)"
        )


def _read_gpt_header(img: Image, ss: int, lba: int) -> tuple[GptHeader | None, str]:
    raw = img.read(lba * ss, ss)
    if raw[:8] != b"EFI PART":
        return None, "no signature"
    raw = field(raw, 0, ss)
    header_size = u32(raw, 12)
    if not GPT_HEADER_MIN_SIZE <= header_size <= ss:
        return None, f"bad header size {header_size}"
    stored_crc = u32(raw, 16)
    body = raw[:16] + b"\0\0\0\0" + raw[20:header_size]
    if zlib.crc32(body) != stored_crc:
        return None, "header CRC mismatch"
    my_lba = u64(raw, 24)
    if my_lba != lba:
        return None, f"header claims LBA {my_lba} but was read at LBA {lba}"
    num_entries, entry_size = u32(raw, 80), u32(raw, 84)
    if not (MIN_GPT_ENTRY_SIZE <= entry_size <= MAX_GPT_ENTRY_SIZE and entry_size % 8 == 0):
        return None, f"bad partition entry size {entry_size}"
    array_bytes = num_entries * entry_size
    if array_bytes > MAX_GPT_ARRAY_BYTES:
        return None, f"partition entry array too large ({num_entries} x {entry_size} bytes)"
    entries_lba = u64(raw, 72)
    start = entries_lba * ss
    if entries_lba < 1 or start + array_bytes > img.size:
        return None, f"partition entry array at LBA {entries_lba} is outside the image"
    entries = img.read(start, array_bytes) if array_bytes else b""
    if len(entries) != array_bytes:
        return None, "partition entry array is truncated"
    if zlib.crc32(entries) != u32(raw, 88):
        return None, "partition entry array CRC mismatch"
    return (
        GptHeader(
            sector_size=ss,
            my_lba=my_lba,
            alternate_lba=u64(raw, 32),
            first_usable=u64(raw, 40),
            last_usable=u64(raw, 48),
            disk_guid=guid_le(raw[56:72]),
            entries_lba=entries_lba,
            num_entries=num_entries,
            entry_size=entry_size,
            entries=entries,
        ),
        "",
    )


def gpt_table(img: Image, hdr: GptHeader, warnings: list[str]) -> PartitionTable:
    """Partitions numbered by entry slot, as Linux names them; unused slots are skipped."""
    ss = hdr.sector_size
    if hdr.first_usable > hdr.last_usable:
        warnings.append(f"GPT usable range is empty (LBA {hdr.first_usable}..{hdr.last_usable})")
    partitions: list[Partition] = []
    for index in range(hdr.num_entries):
        entry = hdr.entries[index * hdr.entry_size : (index + 1) * hdr.entry_size]
        type_raw = entry[0:16]
        if type_raw == bytes(16):
            continue
        number = index + 1
        if len(partitions) >= MAX_GPT_PARTITIONS:
            warnings.append(f"more than {MAX_GPT_PARTITIONS} GPT partitions; rest ignored")
            break
        first, last = u64(entry, 32), u64(entry, 40)
        if first > last:
            warnings.append(f"p{number}: ends (LBA {last}) before it starts (LBA {first})")
            continue
        start, size = first * ss, (last - first + 1) * ss
        if start + size > img.size:
            warnings.append(f"p{number}: extends past the end of the image; ignored")
            continue
        if first < hdr.first_usable or last > hdr.last_usable:
            warnings.append(f"p{number}: lies outside the GPT usable area")
        type_id = guid_le(type_raw)
        name_raw = entry[56 : min(len(entry), 128)]
        name = name_raw.decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        partitions.append(
            with_filesystem(
                img,
                number=number,
                start=start,
                size=size,
                type_id=type_id,
                type_name=GPT_TYPE_NAMES.get(type_id, "unknown"),
                name=name,
                guid=guid_le(entry[16:32]),
            )
        )
    warn_overlaps(partitions, warnings)
    return PartitionTable("gpt", ss, hdr.disk_guid, tuple(partitions), tuple(warnings))
