"""FAT12/16/32 free space: clusters whose FAT entry is zero, in every mirrored copy of the FAT.

The boot sector, reserved sectors, the FATs and FAT12/16's fixed root directory are always
used; so are sectors past the last whole cluster. A volume the system did not unmount cleanly
(the clean-shutdown bit in FAT[1], or the dirty flag Linux and Windows keep in the boot sector)
may have FAT entries that do not describe its files yet, and is read whole.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from agent.source.allocation.bounds import clip, exact
from agent.source.allocation.model import Allocation, Read, ReadWhole

_NONZERO = bytes([0] + [1] * 255)
_LOW_NIBBLE = bytes(1 if b & 0x0F else 0 for b in range(256))
_HIGH_NIBBLE = bytes(1 if b & 0xF0 else 0 for b in range(256))
_FREE = re.compile(rb"\x00+")
FSINFO_UNKNOWN = 0xFFFFFFFF


@dataclass(frozen=True)
class FatLayout:
    """Where a FAT volume's parts are, in sectors unless named otherwise."""

    sector: int
    sectors_per_cluster: int
    reserved: int
    fats: int
    fat_size: int
    root_sectors: int
    total: int
    clusters: int  # data clusters, numbered 2 .. clusters + 1
    bits: int  # 12, 16 or 32
    media: int

    @property
    def cluster_bytes(self) -> int:
        return self.sector * self.sectors_per_cluster

    @property
    def data_start(self) -> int:
        """Byte offset of cluster 2."""
        return (self.reserved + self.fats * self.fat_size + self.root_sectors) * self.sector


def layout(boot: bytes) -> FatLayout | None:
    """The layout a FAT boot sector describes, or None when its BIOS parameter block makes no
    sense. As Linux does, a zero 16-bit FAT size means FAT32, otherwise the cluster count decides
    between FAT12 and FAT16; clusters the FAT has no entries for are left out."""
    if len(boot) < 512 or boot[0] not in (0xE9, 0xEB):
        return None
    sector, spc, reserved, fats, roots, total16, media, fat16 = struct.unpack_from("<HBHBHHBH", boot, 11)
    total = total16 or struct.unpack_from("<I", boot, 32)[0]
    fat_size = fat16 or struct.unpack_from("<I", boot, 36)[0]
    if sector not in (512, 1024, 2048, 4096) or not spc or spc & (spc - 1) or not reserved or not fats:
        return None
    if not fat_size or not (media == 0xF0 or media >= 0xF8) or (not fat16 and roots):
        return None
    root_sectors = (roots * 32 + sector - 1) // sector
    data = reserved + fats * fat_size + root_sectors
    if total <= data:
        return None
    clusters = (total - data) // spc
    bits = 32 if not fat16 else 12 if clusters < 4085 else 16
    entries = fat_size * sector * 8 // bits
    clusters = min(clusters, entries - 2, {12: 0xFF4, 16: 0xFFF4, 32: 0x0FFFFFF5}[bits] - 1)
    if clusters < 1:
        return None
    return FatLayout(sector, spc, reserved, fats, fat_size, root_sectors, total, clusters, bits, media)


def used_flags(fat: bytes, bits: int, clusters: int) -> bytes:
    """One byte per FAT entry 0 .. clusters + 1, zero where the entry is zero (a free cluster).
    Built from whole-byte translations and big-integer ORs, never a Python loop per entry."""
    entries = clusters + 2
    if bits == 12:
        data = bytes(fat[:(entries * 3 + 1) // 2]).ljust(-(-entries // 2) * 3, b"\0")
        lo, mid, hi = data[0::3], data[1::3], data[2::3]
        even = _or(lo.translate(_NONZERO), mid.translate(_LOW_NIBBLE))
        odd = _or(mid.translate(_HIGH_NIBBLE), hi.translate(_NONZERO))
        out = bytearray(2 * len(even))
        out[0::2], out[1::2] = even, odd
        return bytes(out[:entries])
    width = bits // 8
    data = bytes(fat[:entries * width])
    lanes = [data[k::width].translate(_LOW_NIBBLE if bits == 32 and k == 3 else _NONZERO) for k in range(width)]
    return _or(*lanes)


def _or(*lanes: bytes) -> bytes:
    value = 0
    for lane in lanes:
        value |= int.from_bytes(lane, "little")
    return value.to_bytes(len(lanes[0]), "little")


def free_space(read: Read, size: int) -> Allocation:
    """Free byte ranges of a FAT12/16/32 volume; ReadWhole when it cannot be vouched for."""
    boot = exact(read, 0, 512, "boot sector")
    lay = layout(boot)
    if lay is None:
        raise ReadWhole("no valid FAT boot sector")
    if boot[65 if lay.bits == 32 else 37] & 1:
        raise ReadWhole("volume was not unmounted cleanly")
    copies = range(lay.fats)
    if lay.bits == 32:
        ext_flags = struct.unpack_from("<H", boot, 40)[0]
        if ext_flags & 0x80:  # mirroring off: only the active FAT is kept up to date
            if ext_flags & 0xF >= lay.fats:
                raise ReadWhole("active FAT out of bounds")
            copies = range(ext_flags & 0xF, (ext_flags & 0xF) + 1)
    fat_bytes = (lay.clusters + 2) * lay.bits // 8 + 1
    used = 0
    for n in copies:
        fat = exact(read, (lay.reserved + n * lay.fat_size) * lay.sector, fat_bytes, "FAT")
        _check_head(fat, lay)
        used |= int.from_bytes(used_flags(fat, lay.bits, lay.clusters), "little")
    flags = used.to_bytes(lay.clusters + 2, "little")
    start, cluster = lay.data_start, lay.cluster_bytes
    free = [(start + (m.start() - 2) * cluster, start + (m.end() - 2) * cluster)
            for m in _FREE.finditer(flags, 2)]
    if lay.bits == 32:
        _check_fsinfo(read, boot, lay, sum(e - s for s, e in free) // cluster)
    return Allocation(clip(free, min(size, lay.total * lay.sector)), f"FAT{lay.bits} allocation table")


def _check_head(fat: bytes, lay: FatLayout) -> None:
    """FAT[0] repeats the media byte; FAT[1]'s clean-shutdown bit (FAT16/32) is cleared by
    Windows while the volume is mounted."""
    if fat[0] != lay.media:
        raise ReadWhole("FAT damaged: media byte")
    if lay.bits == 16 and not struct.unpack_from("<H", fat, 2)[0] & 0x8000:
        raise ReadWhole("volume was not unmounted cleanly")
    if lay.bits == 32 and not struct.unpack_from("<I", fat, 4)[0] & 0x08000000:
        raise ReadWhole("volume was not unmounted cleanly")


def _check_fsinfo(read: Read, boot: bytes, lay: FatLayout, free: int) -> None:
    """FAT32 keeps a free-cluster count in FSInfo; finding clearly more free clusters than it says
    means lost FAT entries, not free space."""
    where = struct.unpack_from("<H", boot, 48)[0]
    if not 0 < where < lay.reserved:
        return
    info = exact(read, where * lay.sector, 512, "FSInfo")
    if info[:4] != b"RRaA" or info[484:488] != b"rrAa":
        return
    count = struct.unpack_from("<I", info, 488)[0]
    if count != FSINFO_UNKNOWN and count <= lay.clusters and free > count + max(16, lay.clusters >> 10):
        raise ReadWhole("free cluster count disagrees with FSInfo")
