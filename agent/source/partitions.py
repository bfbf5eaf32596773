"""Read the partition table of a disk image into a small, readable summary.

Each snapshot manifest records what was on the disk (partitions, their types, filesystems
and labels) so a user choosing what to restore can recognise it without mounting anything.
The input is untrusted bytes from whatever disk was backed up, so every length and offset
read from the image is checked and capped: a malformed table yields scheme "none" or a
table with warnings, never an exception (other than one raised by the read callable).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import asdict, dataclass
from typing import Callable, Literal

Reader = Callable[[int, int], bytes]
Scheme = Literal["gpt", "mbr", "none"]

MAX_GPT_PARTITIONS = 256  # used entries reported; real tables have 128 slots
MAX_GPT_ARRAY_BYTES = 1 << 20  # bounds the one read of the entry array
MAX_LOGICAL_PARTITIONS = 128
MIN_GPT_ENTRY_SIZE = 128
MAX_GPT_ENTRY_SIZE = 4096
GPT_HEADER_MIN_SIZE = 92
GPT_REVISION_1_0 = 0x00010000
PROBE_BYTES = 0x11000  # enough for every superblock probed below (btrfs sits at 64 KiB)
MAX_DIR_BYTES = 64 << 10  # how much of a root directory is scanned for a volume label

MBR_SECTOR = 512
MBR_EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
MBR_GPT_PROTECTIVE = 0xEE

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


# ---------------------------------------------------------------------------------------
# Byte helpers: every field read goes through these so a short buffer reads as zeros
# instead of raising.


def _field(buf: bytes, off: int, length: int) -> bytes:
    chunk = buf[off : off + length]
    return chunk + bytes(length - len(chunk)) if len(chunk) < length else chunk


def _u8(buf: bytes, off: int) -> int:
    return buf[off] if 0 <= off < len(buf) else 0


def _u16(buf: bytes, off: int) -> int:
    return struct.unpack_from("<H", _field(buf, off, 2))[0]


def _u32(buf: bytes, off: int) -> int:
    return struct.unpack_from("<I", _field(buf, off, 4))[0]


def _u64(buf: bytes, off: int) -> int:
    return struct.unpack_from("<Q", _field(buf, off, 8))[0]


def _guid_le(raw: bytes) -> str:
    """GPT GUIDs are stored mixed-endian; shown upper-case as sgdisk and the spec do."""
    return str(uuid.UUID(bytes_le=_field(raw, 0, 16))).upper()


def _uuid_be(raw: bytes) -> str:
    return str(uuid.UUID(bytes=_field(raw, 0, 16)))


def _text(raw: bytes, encoding: str = "ascii") -> str | None:
    """A NUL/space padded on-disk label, or None when empty."""
    s = raw.split(b"\x00", 1)[0].decode(encoding, errors="replace").strip()
    return s or None


class _Image:
    """Bounded reads from the caller's reader; never asks for bytes past the image end."""

    def __init__(self, read: Reader, size: int):
        self._read = read
        self.size = max(0, int(size))

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        data = self._read(offset, length)
        return bytes(data[:length])


# ---------------------------------------------------------------------------------------
# Public entry point


def read_partition_table(read: Reader, size: int) -> PartitionTable:
    """Parse GPT (primary, else backup) or MBR (with logical partitions) from an image."""
    img = _Image(read, size)
    warnings: list[str] = []
    if img.size < MBR_SECTOR:
        return PartitionTable("none", MBR_SECTOR, None, (), ())

    mbr = _field(img.read(0, MBR_SECTOR), 0, MBR_SECTOR)
    has_boot_sig = mbr[510:512] == b"\x55\xaa"
    mbr_entries = _mbr_entries(mbr) if has_boot_sig else []
    protective = any(e.type == MBR_GPT_PROTECTIVE for e in mbr_entries)
    looks_like_vbr = has_boot_sig and _looks_like_boot_sector(mbr)

    gpt = _find_gpt(img, try_backup=protective or not has_boot_sig, warnings=warnings)
    if gpt is not None:
        if not protective:
            warnings.append("GPT found but the MBR has no protective (0xEE) entry")
        elif any(e.type not in (0, MBR_GPT_PROTECTIVE) for e in mbr_entries):
            warnings.append("hybrid MBR: MBR entries besides the GPT protective one are ignored")
        return _gpt_table(img, gpt, warnings)

    if protective:
        warnings.append("protective MBR (0xEE) present but no valid GPT header was found")
        return PartitionTable("none", MBR_SECTOR, None, (), tuple(warnings))
    if not has_boot_sig or looks_like_vbr:
        # No table, or a whole-disk filesystem ("superfloppy") whose boot sector also ends
        # in 55 AA; its BPB bytes are not partition entries.
        return PartitionTable("none", MBR_SECTOR, None, (), tuple(warnings))
    if any(_u8(mbr, 446 + 16 * i) not in (0x00, 0x80) for i in range(4)):
        warnings.append("boot signature present but MBR partition entries are invalid")
        return PartitionTable("none", MBR_SECTOR, None, (), tuple(warnings))
    return _mbr_table(img, mbr, mbr_entries, warnings)


# ---------------------------------------------------------------------------------------
# GPT


@dataclass(frozen=True)
class _GptHeader:
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


def _find_gpt(img: _Image, *, try_backup: bool, warnings: list[str]) -> _GptHeader | None:
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


def _check_backup(img: _Image, primary: _GptHeader, warnings: list[str]) -> None:
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


def _read_gpt_header(img: _Image, ss: int, lba: int) -> tuple[_GptHeader | None, str]:
    raw = img.read(lba * ss, ss)
    if raw[:8] != b"EFI PART":
        return None, "no signature"
    raw = _field(raw, 0, ss)
    header_size = _u32(raw, 12)
    if not GPT_HEADER_MIN_SIZE <= header_size <= ss:
        return None, f"bad header size {header_size}"
    stored_crc = _u32(raw, 16)
    body = raw[:16] + b"\0\0\0\0" + raw[20:header_size]
    if zlib.crc32(body) != stored_crc:
        return None, "header CRC mismatch"
    my_lba = _u64(raw, 24)
    if my_lba != lba:
        return None, f"header claims LBA {my_lba} but was read at LBA {lba}"
    num_entries, entry_size = _u32(raw, 80), _u32(raw, 84)
    if not (MIN_GPT_ENTRY_SIZE <= entry_size <= MAX_GPT_ENTRY_SIZE and entry_size % 8 == 0):
        return None, f"bad partition entry size {entry_size}"
    array_bytes = num_entries * entry_size
    if array_bytes > MAX_GPT_ARRAY_BYTES:
        return None, f"partition entry array too large ({num_entries} x {entry_size} bytes)"
    entries_lba = _u64(raw, 72)
    start = entries_lba * ss
    if entries_lba < 1 or start + array_bytes > img.size:
        return None, f"partition entry array at LBA {entries_lba} is outside the image"
    entries = img.read(start, array_bytes) if array_bytes else b""
    if len(entries) != array_bytes:
        return None, "partition entry array is truncated"
    if zlib.crc32(entries) != _u32(raw, 88):
        return None, "partition entry array CRC mismatch"
    return (
        _GptHeader(
            sector_size=ss,
            my_lba=my_lba,
            alternate_lba=_u64(raw, 32),
            first_usable=_u64(raw, 40),
            last_usable=_u64(raw, 48),
            disk_guid=_guid_le(raw[56:72]),
            entries_lba=entries_lba,
            num_entries=num_entries,
            entry_size=entry_size,
            entries=entries,
        ),
        "",
    )


def _gpt_table(img: _Image, hdr: _GptHeader, warnings: list[str]) -> PartitionTable:
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
        first, last = _u64(entry, 32), _u64(entry, 40)
        if first > last:
            warnings.append(f"p{number}: ends (LBA {last}) before it starts (LBA {first})")
            continue
        start, size = first * ss, (last - first + 1) * ss
        if start + size > img.size:
            warnings.append(f"p{number}: extends past the end of the image; ignored")
            continue
        if first < hdr.first_usable or last > hdr.last_usable:
            warnings.append(f"p{number}: lies outside the GPT usable area")
        type_id = _guid_le(type_raw)
        name_raw = entry[56 : min(len(entry), 128)]
        name = name_raw.decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        partitions.append(
            _with_filesystem(
                img,
                number=number,
                start=start,
                size=size,
                type_id=type_id,
                type_name=GPT_TYPE_NAMES.get(type_id, "unknown"),
                name=name,
                guid=_guid_le(entry[16:32]),
            )
        )
    _warn_overlaps(partitions, warnings)
    return PartitionTable("gpt", ss, hdr.disk_guid, tuple(partitions), tuple(warnings))


# ---------------------------------------------------------------------------------------
# MBR


@dataclass(frozen=True)
class _MbrEntry:
    type: int
    lba: int
    sectors: int


def _mbr_entries(sector: bytes) -> list[_MbrEntry]:
    out = []
    for i in range(4):
        off = 446 + 16 * i
        out.append(_MbrEntry(_u8(sector, off + 4), _u32(sector, off + 8), _u32(sector, off + 12)))
    return out


def _looks_like_boot_sector(sector: bytes) -> bool:
    """A filesystem boot sector at LBA 0 (no partition table), told apart from an MBR."""
    oem = sector[3:11]
    if oem in (b"NTFS    ", b"EXFAT   "):
        return True
    return _fat_bpb(sector) is not None


def _mbr_table(
    img: _Image, mbr: bytes, entries: list[_MbrEntry], warnings: list[str]
) -> PartitionTable:
    sig = _u32(mbr, 440)
    disk_id = f"{sig:08x}" if sig else None
    partitions: list[Partition] = []
    extended: _MbrEntry | None = None
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
    _warn_overlaps([p for p in partitions if p.type_name != "extended"], warnings)
    return PartitionTable("mbr", MBR_SECTOR, disk_id, tuple(partitions), tuple(warnings))


def _mbr_partition(
    img: _Image,
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
    common = dict(
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
    return _with_filesystem(img, **common)


def _logical_partitions(
    img: _Image, extended: _MbrEntry, disk_id: str | None, warnings: list[str]
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
        this, link = _mbr_entries(sector)[:2]
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


def _warn_overlaps(partitions: list[Partition], warnings: list[str]) -> None:
    ordered = sorted(partitions, key=lambda p: (p.start, p.number))
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.start + a.size:
            warnings.append(f"p{a.number} and p{b.number} overlap")


# ---------------------------------------------------------------------------------------
# Filesystem probing


@dataclass(frozen=True)
class _Fs:
    kind: str
    label: str | None = None
    uuid: str | None = None
    version: str | None = None


def _with_filesystem(img: _Image, **fields) -> Partition:
    fs = _probe(img, fields["start"], fields["size"])
    return Partition(
        **fields,
        filesystem=fs.kind if fs else None,
        fs_label=fs.label if fs else None,
        fs_uuid=fs.uuid if fs else None,
        fs_version=fs.version if fs else None,
    )


def _probe(img: _Image, start: int, size: int) -> _Fs | None:
    """Recognise a filesystem from its superblock; definite magics first, FAT last."""
    head = img.read(start, min(size, PROBE_BYTES))

    def read_in(off: int, length: int) -> bytes:
        if off < 0 or off >= size:
            return b""
        return img.read(start + off, min(length, size - off))

    for probe in (_probe_luks, _probe_xfs, _probe_ntfs, _probe_bitlocker):
        found = probe(head)
        if found:
            return found
    found = _probe_exfat(head, read_in)
    if found:
        return found
    for probe in (_probe_ext, _probe_btrfs, _probe_swap, _probe_lvm, _probe_hfsplus):
        found = probe(head)
        if found:
            return found
    return _probe_fat(head, read_in)


def _probe_luks(h: bytes) -> _Fs | None:
    if h[:6] != b"LUKS\xba\xbe":
        return None
    version = struct.unpack(">H", _field(h, 6, 2))[0]
    label = _text(_field(h, 24, 48)) if version == 2 else None
    return _Fs("LUKS", label, _text(_field(h, 168, 40)), f"v{version}")


def _probe_xfs(h: bytes) -> _Fs | None:
    if h[:4] != b"XFSB":
        return None
    return _Fs("xfs", _text(_field(h, 108, 12)), _uuid_be(_field(h, 32, 16)))


def _probe_ntfs(h: bytes) -> _Fs | None:
    # The label lives in the $Volume MFT record; the serial is enough to recognise it.
    if h[3:11] != b"NTFS    ":
        return None
    return _Fs("ntfs", None, f"{_u64(h, 0x48):016X}")


def _probe_bitlocker(h: bytes) -> _Fs | None:
    if h[3:11] != b"-FVE-FS-":
        return None
    return _Fs("BitLocker")


def _probe_exfat(h: bytes, read_in: Callable[[int, int], bytes]) -> _Fs | None:
    if h[3:11] != b"EXFAT   ":
        return None
    serial = _u32(h, 100)
    label = None
    bps_shift, spc_shift = _u8(h, 108), _u8(h, 109)
    heap, root = _u32(h, 88), _u32(h, 96)
    if 9 <= bps_shift <= 12 and bps_shift + spc_shift <= 25 and root >= 2:
        cluster = 1 << (bps_shift + spc_shift)
        off = (heap << bps_shift) + (root - 2) * cluster
        root_dir = read_in(off, min(cluster, MAX_DIR_BYTES))
        for pos in range(0, len(root_dir) - 31, 32):
            etype = root_dir[pos]
            if etype == 0x00:
                break
            if etype == 0x83:
                count = min(root_dir[pos + 1], 11)
                raw = root_dir[pos + 2 : pos + 2 + 2 * count]
                label = raw.decode("utf-16-le", errors="replace").strip() or None
                break
    return _Fs("exfat", label, f"{serial >> 16:04X}-{serial & 0xFFFF:04X}")


# ext superblock feature bits (from e2fsprogs' ext2_fs.h) that ext3 lacks.
_EXT_COMPAT_HAS_JOURNAL = 0x0004
_EXT_INCOMPAT_JOURNAL_DEV = 0x0008
_EXT3_INCOMPAT_SUPPORTED = 0x0002 | 0x0004 | 0x0010  # filetype, recover, meta_bg
_EXT3_RO_COMPAT_SUPPORTED = 0x0001 | 0x0002 | 0x0004  # sparse_super, large_file, btree_dir


def _probe_ext(h: bytes) -> _Fs | None:
    sb = _field(h, 1024, 1024)
    if _u16(sb, 0x38) != 0xEF53:
        return None
    compat, incompat, ro_compat = _u32(sb, 0x5C), _u32(sb, 0x60), _u32(sb, 0x64)
    if incompat & _EXT_INCOMPAT_JOURNAL_DEV:
        kind = "jbd"
    elif incompat & ~_EXT3_INCOMPAT_SUPPORTED or ro_compat & ~_EXT3_RO_COMPAT_SUPPORTED:
        kind = "ext4"
    elif compat & _EXT_COMPAT_HAS_JOURNAL:
        kind = "ext3"
    else:
        kind = "ext2"
    return _Fs(kind, _text(sb[0x78:0x88], "utf-8"), _uuid_be(sb[0x68:0x78]))


def _probe_btrfs(h: bytes) -> _Fs | None:
    sb = _field(h, 0x10000, 0x1000)
    if sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return _Fs("btrfs", _text(sb[0x12B:0x22B], "utf-8"), _uuid_be(sb[0x20:0x30]))


def _probe_swap(h: bytes) -> _Fs | None:
    for page in (4096, 8192, 16384, 65536):
        magic = h[page - 10 : page]
        if magic == b"SWAPSPACE2":
            hdr = _field(h, 1024, 64)
            return _Fs("swap", _text(hdr[28:44], "utf-8"), _uuid_be(hdr[12:28]))
        if magic == b"SWAP-SPACE":
            return _Fs("swap", version="v0")
    return None


def _probe_lvm(h: bytes) -> _Fs | None:
    for sector in range(4):
        label = _field(h, sector * 512, 512)
        if label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001":
            pv_off = _u32(label, 20)
            raw = _field(label, pv_off, 32) if 32 <= pv_off <= 480 else b""
            pvid = raw.decode("ascii", errors="replace") if raw.isalnum() else ""
            if len(pvid) == 32:
                cuts = (6, 4, 4, 4, 4, 4, 6)
                pieces, pos = [], 0
                for n in cuts:
                    pieces.append(pvid[pos : pos + n])
                    pos += n
                return _Fs("LVM2 PV", None, "-".join(pieces))
            return _Fs("LVM2 PV")
    return None


def _probe_hfsplus(h: bytes) -> _Fs | None:
    if h[1024:1026] in (b"H+", b"HX"):
        return _Fs("hfsplus")
    if h[32:36] == b"NXSB":
        return _Fs("apfs")
    return None


@dataclass(frozen=True)
class _Bpb:
    bytes_per_sector: int
    sectors_per_cluster: int
    reserved: int
    fats: int
    root_entries: int
    fat_size: int
    total_sectors: int


def _fat_bpb(h: bytes) -> _Bpb | None:
    """Validate a FAT BIOS parameter block the way Linux does before trusting it."""
    if len(h) < 512 or h[0] not in (0xE9, 0xEB):
        return None
    bps, spc = _u16(h, 11), _u8(h, 13)
    reserved, fats, root_entries = _u16(h, 14), _u8(h, 16), _u16(h, 17)
    media = _u8(h, 21)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1):
        return None
    if reserved == 0 or fats not in (1, 2) or not (media == 0xF0 or media >= 0xF8):
        return None
    total = _u16(h, 19) or _u32(h, 32)
    fat_size = _u16(h, 22) or _u32(h, 36)
    if total == 0 or fat_size == 0:
        return None
    if h[54:57] != b"FAT" and h[82:87] != b"FAT32":
        return None
    return _Bpb(bps, spc, reserved, fats, root_entries, fat_size, total)


def _probe_fat(h: bytes, read_in: Callable[[int, int], bytes]) -> _Fs | None:
    bpb = _fat_bpb(h)
    if bpb is None:
        return None
    root_dir_sectors = (bpb.root_entries * 32 + bpb.bytes_per_sector - 1) // bpb.bytes_per_sector
    meta = bpb.reserved + bpb.fats * bpb.fat_size + root_dir_sectors
    clusters = max(0, bpb.total_sectors - meta) // bpb.sectors_per_cluster
    if clusters < 4085:
        version = "FAT12"
    elif clusters < 65525:
        version = "FAT16"
    else:
        version = "FAT32"
    ext = 64 if version == "FAT32" else 36  # extended BPB location
    serial = label = None
    if _u8(h, ext + 2) in (0x28, 0x29):
        s = _u32(h, ext + 3)
        serial = f"{s >> 16:04X}-{s & 0xFFFF:04X}"
        if _u8(h, ext + 2) == 0x29:
            label = _fat_label(h[ext + 7 : ext + 18])
    # Tools that relabel (Windows, fatlabel) update the root directory's volume entry.
    if version == "FAT32":
        cluster_bytes = bpb.sectors_per_cluster * bpb.bytes_per_sector
        root_cluster = _u32(h, 44)
        data = (bpb.reserved + bpb.fats * bpb.fat_size) * bpb.bytes_per_sector
        off = data + (root_cluster - 2) * cluster_bytes if root_cluster >= 2 else -1
        length = cluster_bytes
    else:
        off = (bpb.reserved + bpb.fats * bpb.fat_size) * bpb.bytes_per_sector
        length = root_dir_sectors * bpb.bytes_per_sector
    root_dir = read_in(off, min(length, MAX_DIR_BYTES))
    for pos in range(0, len(root_dir) - 31, 32):
        first, attr = root_dir[pos], root_dir[pos + 11]
        if first == 0x00:
            break
        if first != 0xE5 and attr & 0x08 and attr & 0x0F != 0x0F:
            label = _fat_label(root_dir[pos : pos + 11])
            break
    return _Fs("vfat", label, serial, version)


def _fat_label(raw: bytes) -> str | None:
    text = _text(raw, "cp437")
    return None if text in (None, "NO NAME") else text
