"""How much of a filesystem is in use, from its own counters or allocation bitmap, for the
partition listing's "used" column. Each reader takes the few bytes it needs; a field that makes
no sense gives None (shown as "?"), never an error: the listing must work on damaged disks too."""

from __future__ import annotations

import struct
from typing import Callable

Read = Callable[[int, int], bytes]  # read(offset, length) in the partition


def ext_used(read: Read) -> int | None:
    """ext2/3/4: block count minus the superblock's free-block count."""
    sb = read(1024, 1024)
    if len(sb) < 1024 or sb[56:58] != b"\x53\xef":
        return None
    blocks, free = struct.unpack_from("<I", sb, 4)[0], struct.unpack_from("<I", sb, 12)[0]
    log = struct.unpack_from("<I", sb, 24)[0]
    if struct.unpack_from("<I", sb, 96)[0] & 0x80:  # 64bit: the high halves count too
        blocks |= struct.unpack_from("<I", sb, 0x150)[0] << 32
        free |= struct.unpack_from("<I", sb, 0x158)[0] << 32
    if log > 6 or free > blocks:
        return None
    return (blocks - free) << (10 + log)


def xfs_used(read: Read) -> int | None:
    """XFS: data blocks minus sb_fdblocks (kept exact at every clean unmount)."""
    sb = read(0, 152)
    if len(sb) < 152 or sb[:4] != b"XFSB":
        return None
    bs, dblocks = struct.unpack_from(">IQ", sb, 4)
    free = struct.unpack_from(">Q", sb, 144)[0]
    if not bs or free > dblocks:
        return None
    return (dblocks - free) * bs


def fat_used(read: Read) -> int | None:
    """FAT12/16/32: the volume minus its free clusters, from FAT32's FSInfo when it knows the count,
    else by counting free entries in the first FAT."""
    bpb = read(0, 512)
    if len(bpb) < 512 or bpb[510:512] != b"\x55\xaa":
        return None
    # BPB from byte 11: bytes per sector, sectors per cluster, reserved sectors, FATs, root entries,
    # 16-bit total sectors, media byte (skipped), 16-bit FAT size
    sector, spc, reserved, nfats, roots, total16, fatsz16 = struct.unpack_from("<HBHBHHxH", bpb, 11)
    total = total16 or struct.unpack_from("<I", bpb, 32)[0]
    fatsz = fatsz16 or struct.unpack_from("<I", bpb, 36)[0]
    if sector not in (512, 1024, 2048, 4096) or spc not in (1, 2, 4, 8, 16, 32, 64, 128) or not nfats:
        return None
    data_start = reserved + nfats * fatsz + (roots * 32 + sector - 1) // sector
    if total <= data_start:
        return None
    clusters = (total - data_start) // spc
    free = None
    if not fatsz16:  # FAT32
        info = struct.unpack_from("<H", bpb, 48)[0]
        fsinfo = read(info * sector, 512) if 0 < info < reserved else b""
        if len(fsinfo) == 512 and fsinfo[:4] == b"RRaA" and fsinfo[484:488] == b"rrAa":
            count = struct.unpack_from("<I", fsinfo, 488)[0]
            free = count if count <= clusters else None
    if free is None:
        free = _free_fat_entries(read(reserved * sector, fatsz * sector), clusters)
    return None if free is None else total * sector - free * spc * sector


def _free_fat_entries(fat: bytes, clusters: int) -> int | None:
    """Entries 2 .. clusters+1 of a FAT that are zero (free); the entry width follows from the count."""
    if clusters < 4085:  # FAT12: two entries in three bytes
        if len(fat) < (clusters + 2) * 3 // 2 + 1:
            return None
        free = 0
        for n in range(2, clusters + 2):
            off = n * 3 // 2
            v = int.from_bytes(fat[off:off + 2], "little")
            free += not (v >> 4 if n & 1 else v & 0xFFF)
        return free
    width = 2 if clusters < 65525 else 4
    if len(fat) < (clusters + 2) * width:
        return None
    entries = memoryview(fat)[2 * width:(clusters + 2) * width].cast("H" if width == 2 else "I")
    if width == 2:
        return entries.tolist().count(0)
    return sum(1 for v in entries.tolist() if not v & 0x0FFFFFFF)


def bitmap_used(bitmap: bytes, units: int, unit_size: int) -> int | None:
    """An allocation bitmap (NTFS $Bitmap, exFAT's) of `units` clusters: set bits times the cluster size."""
    if len(bitmap) * 8 < units:
        return None
    whole, rest = divmod(units, 8)
    used = int.from_bytes(bitmap[:whole], "little").bit_count()
    if rest:
        used += (bitmap[whole] & ((1 << rest) - 1)).bit_count()
    return used * unit_size
