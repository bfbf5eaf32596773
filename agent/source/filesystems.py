"""Recognise the filesystem in a partition from its superblock, with its label and UUID.

Only a few KiB at the start of each partition are read (plus, for FAT and exFAT, part of the
root directory, where relabelling tools put the current label), so a manifest can say what
a partition holds without mounting it. Like the table parsers, every probe tolerates
truncated or garbage input and returns None rather than raising.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Unpack

from agent.source.bytefields import (
    Image,
    field,
    padded_text,
    u8,
    u16,
    u32,
    u64,
    uuid_be,
)
from agent.source.partition_model import Partition, TableFields

PROBE_BYTES = 0x11000  # enough for every superblock probed below (btrfs sits at 64 KiB)
MAX_DIR_BYTES = 64 << 10  # how much of a root directory is scanned for a volume label


@dataclass(frozen=True)
class _Fs:
    kind: str
    label: str | None = None
    uuid: str | None = None
    version: str | None = None


def with_filesystem(img: Image, **fields: Unpack[TableFields]) -> Partition:
    """A Partition from its table fields plus whatever filesystem is found inside it."""
    fs = _probe(img, fields["start"], fields["size"])
    return Partition(
        **fields,
        filesystem=fs.kind if fs else None,
        fs_label=fs.label if fs else None,
        fs_uuid=fs.uuid if fs else None,
        fs_version=fs.version if fs else None,
    )


def _probe(img: Image, start: int, size: int) -> _Fs | None:
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
    version = struct.unpack(">H", field(h, 6, 2))[0]
    label = padded_text(field(h, 24, 48)) if version == 2 else None
    return _Fs("LUKS", label, padded_text(field(h, 168, 40)), f"v{version}")


def _probe_xfs(h: bytes) -> _Fs | None:
    if h[:4] != b"XFSB":
        return None
    return _Fs("xfs", padded_text(field(h, 108, 12)), uuid_be(field(h, 32, 16)))


def _probe_ntfs(h: bytes) -> _Fs | None:
    # The label lives in the $Volume MFT record; the serial is enough to recognise it.
    if h[3:11] != b"NTFS    ":
        return None
    return _Fs("ntfs", None, f"{u64(h, 0x48):016X}")


def _probe_bitlocker(h: bytes) -> _Fs | None:
    if h[3:11] != b"-FVE-FS-":
        return None
    return _Fs("BitLocker")


def _probe_exfat(h: bytes, read_in: Callable[[int, int], bytes]) -> _Fs | None:
    if h[3:11] != b"EXFAT   ":
        return None
    serial = u32(h, 100)
    label = None
    bps_shift, spc_shift = u8(h, 108), u8(h, 109)
    heap, root = u32(h, 88), u32(h, 96)
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
    sb = field(h, 1024, 1024)
    if u16(sb, 0x38) != 0xEF53:
        return None
    compat, incompat, ro_compat = u32(sb, 0x5C), u32(sb, 0x60), u32(sb, 0x64)
    if incompat & _EXT_INCOMPAT_JOURNAL_DEV:
        kind = "jbd"
    elif incompat & ~_EXT3_INCOMPAT_SUPPORTED or ro_compat & ~_EXT3_RO_COMPAT_SUPPORTED:
        kind = "ext4"
    elif compat & _EXT_COMPAT_HAS_JOURNAL:
        kind = "ext3"
    else:
        kind = "ext2"
    return _Fs(kind, padded_text(sb[0x78:0x88], "utf-8"), uuid_be(sb[0x68:0x78]))


def _probe_btrfs(h: bytes) -> _Fs | None:
    sb = field(h, 0x10000, 0x1000)
    if sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return _Fs("btrfs", padded_text(sb[0x12B:0x22B], "utf-8"), uuid_be(sb[0x20:0x30]))


def _probe_swap(h: bytes) -> _Fs | None:
    for page in (4096, 8192, 16384, 65536):
        magic = h[page - 10 : page]
        if magic == b"SWAPSPACE2":
            hdr = field(h, 1024, 64)
            return _Fs("swap", padded_text(hdr[28:44], "utf-8"), uuid_be(hdr[12:28]))
        if magic == b"SWAP-SPACE":
            return _Fs("swap", version="v0")
    return None


def _probe_lvm(h: bytes) -> _Fs | None:
    for sector in range(4):
        label = field(h, sector * 512, 512)
        if label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001":
            pv_off = u32(label, 20)
            raw = field(label, pv_off, 32) if 32 <= pv_off <= 480 else b""
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



def looks_like_boot_sector(sector: bytes) -> bool:
    """A filesystem boot sector at LBA 0 (no partition table), told apart from an MBR."""
    oem = sector[3:11]
    if oem in (b"NTFS    ", b"EXFAT   "):
        return True
    return _fat_bpb(sector) is not None

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
    bps, spc = u16(h, 11), u8(h, 13)
    reserved, fats, root_entries = u16(h, 14), u8(h, 16), u16(h, 17)
    media = u8(h, 21)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1):
        return None
    if reserved == 0 or fats not in (1, 2) or not (media == 0xF0 or media >= 0xF8):
        return None
    total = u16(h, 19) or u32(h, 32)
    fat_size = u16(h, 22) or u32(h, 36)
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
    if u8(h, ext + 2) in (0x28, 0x29):
        s = u32(h, ext + 3)
        serial = f"{s >> 16:04X}-{s & 0xFFFF:04X}"
        if u8(h, ext + 2) == 0x29:
            label = _fat_label(h[ext + 7 : ext + 18])
    # Tools that relabel (Windows, fatlabel) update the root directory's volume entry.
    if version == "FAT32":
        cluster_bytes = bpb.sectors_per_cluster * bpb.bytes_per_sector
        root_cluster = u32(h, 44)
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
    text = padded_text(raw, "cp437")
    return None if text in (None, "NO NAME") else text
