"""How much of a filesystem is in use, from its own counters or allocation bitmap, for the
partition listing's "used" column. Each reader takes the few bytes it needs; a field that makes
no sense gives None (shown as "?"), never an error: the listing must work on damaged disks too."""

from __future__ import annotations

import struct
from typing import Callable

from agent.source.allocation import fat

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
    else by counting free entries in the first FAT (the layout is agent.source.allocation.fat's)."""
    bpb = read(0, 512)
    if len(bpb) < 512 or bpb[510:512] != b"\x55\xaa":
        return None
    lay = fat.layout(bpb)
    if lay is None:
        return None
    free = None
    if lay.bits == 32:
        info = struct.unpack_from("<H", bpb, 48)[0]
        fsinfo = read(info * lay.sector, 512) if 0 < info < lay.reserved else b""
        if len(fsinfo) == 512 and fsinfo[:4] == b"RRaA" and fsinfo[484:488] == b"rrAa":
            count = struct.unpack_from("<I", fsinfo, 488)[0]
            free = count if count <= lay.clusters else None
    if free is None:
        need = (lay.clusters + 2) * lay.bits // 8 + 1
        table = read(lay.reserved * lay.sector, need)
        if len(table) < need:
            return None
        free = fat.used_flags(table, lay.bits, lay.clusters).count(0, 2)
    return lay.total * lay.sector - free * lay.cluster_bytes


def bitmap_used(bitmap: bytes, units: int, unit_size: int) -> int | None:
    """An allocation bitmap (NTFS $Bitmap, exFAT's) of `units` clusters: set bits times the cluster size."""
    if len(bitmap) * 8 < units:
        return None
    whole, rest = divmod(units, 8)
    used = int.from_bytes(bitmap[:whole], "little").bit_count()
    if rest:
        used += (bitmap[whole] & ((1 << rest) - 1)).bit_count()
    return used * unit_size
