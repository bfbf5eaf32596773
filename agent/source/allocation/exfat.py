"""exFAT free space from its allocation bitmap, a file found through the root directory.

Everything before the cluster heap (boot regions, FATs) is used, as is anything past the heap's
last cluster. A volume marked dirty may have a bitmap that lags its files, and is read whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.source.allocation.bits import free_runs
from agent.source.allocation.bounds import clip, exact, subtract
from agent.source.allocation.model import Allocation, Read, ReadWhole

VOLUME_DIRTY = 0x2
END_OF_CHAIN = 0xFFFFFFF8
ENTRY_BITMAP = 0x81
MAX_ROOT_BYTES = 64 << 20  # a root directory longer than this is not searched for the bitmap


@dataclass(frozen=True)
class _Volume:
    sector: int
    cluster: int
    fat: int  # byte offset of the active FAT
    heap: int  # byte offset of cluster 2
    clusters: int
    root: int
    active: int  # 0 or 1: which FAT and bitmap are in use
    end: int  # byte offset of the volume's end


def free_space(read: Read, size: int) -> Allocation:
    """Free byte ranges of an exFAT volume; ReadWhole when it cannot be vouched for."""
    vol = _boot(read)
    root = _chain(read, vol, vol.root, "root directory")
    first, length = _bitmap_entry(read, vol, root)
    if length < -(-vol.clusters // 8):
        raise ReadWhole("allocation bitmap too short")
    clusters = _chain(read, vol, first, "allocation bitmap", length)
    bitmap = b"".join(exact(read, _offset(vol, c), vol.cluster, "allocation bitmap") for c in clusters)
    free = free_runs(bitmap, vol.clusters, vol.cluster, base=vol.heap)
    own = [(_offset(vol, c), _offset(vol, c) + vol.cluster) for c in root + clusters]
    return Allocation(clip(subtract(free, own), min(size, vol.end)), "exFAT allocation bitmap")


def _boot(read: Read) -> _Volume:
    """The main boot region's geometry, after its checksum and the volume flags."""
    head = exact(read, 0, 512, "boot sector")
    if head[3:11] != b"EXFAT   " or head[510:512] != b"\x55\xaa":
        raise ReadWhole("no exFAT boot sector")
    (length, fat_offset, fat_length, heap, count, root, _, revision, flags, bps_shift, spc_shift,
     fats) = struct.unpack_from("<QIIIIIIHHBBB", head, 72)
    if any(head[11:64]) or revision >> 8 != 1:
        raise ReadWhole("unsupported exFAT revision")
    if not 9 <= bps_shift <= 12 or spc_shift > 25 - bps_shift or fats not in (1, 2):
        raise ReadWhole("exFAT boot sector damaged")
    sector = 1 << bps_shift
    region = exact(read, 0, 12 * sector, "boot region")
    if region[11 * sector:12 * sector] != struct.pack("<I", _boot_checksum(region[:11 * sector])) * (sector // 4):
        raise ReadWhole("boot region checksum mismatch")
    if flags & VOLUME_DIRTY:
        raise ReadWhole("volume was not unmounted cleanly")
    active = flags & 1 if fats == 2 else 0
    cluster = sector << spc_shift
    if fat_offset < 24 or fat_length * sector < (count + 2) * 4 or heap < fat_offset + fats * fat_length:
        raise ReadWhole("exFAT boot sector damaged")
    if not 2 <= root < count + 2 or heap * sector + count * cluster > length * sector:
        raise ReadWhole("exFAT boot sector damaged")
    return _Volume(sector, cluster, (fat_offset + active * fat_length) * sector, heap * sector, count, root, active,
                   length * sector)


def _boot_checksum(data: bytes) -> int:
    """The exFAT boot checksum over sectors 0-10, skipping VolumeFlags and PercentInUse."""
    crc = 0
    for i, b in enumerate(data):
        if i not in (106, 107, 112):
            crc = ((crc >> 1) | (crc & 1) << 31) + b & 0xFFFFFFFF
    return crc


def _offset(vol: _Volume, cluster: int) -> int:
    return vol.heap + (cluster - 2) * vol.cluster


def _chain(read: Read, vol: _Volume, first: int, what: str, length: int | None = None) -> list[int]:
    """The clusters of a FAT chain from `first`: exactly enough for `length` bytes, or up to its
    end mark; a chain that leaves the heap, loops or ends early is damaged."""
    limit = min(vol.clusters, MAX_ROOT_BYTES // vol.cluster + 1) if length is None else -(-length // vol.cluster)
    out: list[int] = []
    cluster = first
    while True:
        if not 2 <= cluster < vol.clusters + 2 or len(out) >= limit:
            raise ReadWhole(f"{what} chain damaged")
        out.append(cluster)
        if len(out) == limit and length is not None:
            return out
        cluster = struct.unpack("<I", exact(read, vol.fat + 4 * cluster, 4, "FAT"))[0]
        if cluster >= END_OF_CHAIN and length is None:
            return out


def _bitmap_entry(read: Read, vol: _Volume, root: list[int]) -> tuple[int, int]:
    """(first cluster, length) of the active allocation bitmap, from its root directory entry."""
    for cluster in root:
        data = exact(read, _offset(vol, cluster), vol.cluster, "root directory")
        for pos in range(0, len(data), 32):
            kind = data[pos]
            if kind == 0:
                raise ReadWhole("no allocation bitmap in the root directory")
            if kind == ENTRY_BITMAP and data[pos + 1] & 1 == vol.active:
                return struct.unpack_from("<IQ", data, pos + 20)
    raise ReadWhole("no allocation bitmap in the root directory")
