"""ext2/3/4 free space from the block bitmaps of each block group.

Group descriptors say where each group's bitmap is; groups that were never written to
(BLOCK_UNINIT) have no bitmap on disk, so, as e2fsprogs does, everything in them except the
metadata placed there (superblock backup, descriptors, reserved descriptor blocks, bitmaps and
inode tables) is free. Every group's count must match its descriptor, the total the superblock,
and checksums must verify where the filesystem has them; a filesystem that was not unmounted
cleanly or uses a feature that changes the layout in ways not handled here is read whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from agent.source.allocation.bits import free_runs
from agent.source.allocation.bounds import clip, exact, subtract
from agent.source.allocation.model import Allocation, Read, ReadWhole

MAGIC = 0xEF53
COMPAT_RESIZE_INODE = 0x10
COMPAT_SPARSE_SUPER2 = 0x200
INCOMPAT_RECOVER = 0x4
INCOMPAT_META_BG = 0x10
INCOMPAT_64BIT = 0x80
INCOMPAT_CSUM_SEED = 0x2000
RO_SPARSE_SUPER = 0x1
RO_GDT_CSUM = 0x10
RO_METADATA_CSUM = 0x400
BG_BLOCK_UNINIT = 0x2

# Features whose meaning for the block bitmaps is known: they add metadata that is allocated in
# the bitmaps (journal, MMP block, orphan file ...) or change nothing about allocation.
INCOMPAT_KNOWN = (0x2 | INCOMPAT_RECOVER | INCOMPAT_META_BG | 0x40 | INCOMPAT_64BIT | 0x100 | 0x200 | 0x400
                  | INCOMPAT_CSUM_SEED | 0x4000 | 0x8000 | 0x10000 | 0x20000)
RO_KNOWN = (RO_SPARSE_SUPER | 0x2 | 0x4 | 0x8 | RO_GDT_CSUM | 0x20 | 0x40 | 0x100 | RO_METADATA_CSUM | 0x1000
            | 0x2000 | 0x4000 | 0x8000 | 0x10000)
UNSUPPORTED_NAMES = {
    ("incompat", 0x1): "compression", ("incompat", 0x8): "journal_dev", ("incompat", 0x1000): "dirdata",
    ("ro_compat", 0x80): "has_snapshot", ("ro_compat", 0x200): "bigalloc", ("ro_compat", 0x800): "replica",
}


def _crc16_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


CRC16 = _crc16_table()


def _crc16(crc: int, data: bytes) -> int:
    """The ANSI CRC-16 (reflected 0x8005) that uninit_bg descriptors carry."""
    for b in data:
        crc = (crc >> 8) ^ CRC16[(crc ^ b) & 0xFF]
    return crc


Crc = Callable[[int, bytes], int]


def _crc32c_raw() -> Crc:
    """ext4's crc32c(seed, data) with no final inversion (google-crc32c, native; imported only for
    filesystems with metadata_csum)."""
    import google_crc32c

    def crc(seed: int, data: bytes) -> int:
        return ~google_crc32c.extend(~seed & 0xFFFFFFFF, bytes(data)) & 0xFFFFFFFF

    return crc


@dataclass(frozen=True)
class _Super:
    block_size: int
    blocks: int
    first_data: int
    per_group: int
    groups: int
    desc_size: int
    inode_blocks: int  # inode table blocks per group
    reserved_gdt: int
    compat: int
    incompat: int
    ro_compat: int
    free: int
    first_meta_bg: int
    backup_bgs: tuple[int, int]
    raw: bytes

    def has_super(self, group: int) -> bool:
        """Whether `group` holds a superblock backup (and, without meta_bg, a descriptor copy)."""
        if group == 0:
            return True
        if self.compat & COMPAT_SPARSE_SUPER2:
            return group in self.backup_bgs
        if group == 1 or not self.ro_compat & RO_SPARSE_SUPER:
            return True
        if not group & 1:
            return False
        for base in (3, 5, 7):
            n = base
            while n < group:
                n *= base
            if n == group:
                return True
        return False

    def group_start(self, group: int) -> int:
        return self.first_data + group * self.per_group


def free_space(read: Read, size: int) -> Allocation:
    """Free byte ranges of an ext2/3/4 filesystem; ReadWhole when it cannot be vouched for."""
    sb = _superblock(exact(read, 1024, 1024, "superblock"))
    crc = _crc32c_raw() if sb.ro_compat & RO_METADATA_CSUM else None
    seed = 0
    if crc is not None:
        if sb.raw[0x175] != 1 or crc(0xFFFFFFFF, sb.raw[:0x3FC]) != struct.unpack_from("<I", sb.raw, 0x3FC)[0]:
            raise ReadWhole("superblock checksum mismatch")
        seed = (struct.unpack_from("<I", sb.raw, 0x270)[0] if sb.incompat & INCOMPAT_CSUM_SEED
                else crc(0xFFFFFFFF, sb.raw[0x68:0x78]))
    table = _descriptor_table(read, sb)
    descs = [table[g * sb.desc_size:(g + 1) * sb.desc_size] for g in range(sb.groups)]
    _check_descriptor_checksums(sb, descs, crc, seed)
    csum_groups = bool(sb.ro_compat & (RO_GDT_CSUM | RO_METADATA_CSUM))
    bs = sb.block_size
    meta = _metadata(sb, descs)
    free: list[tuple[int, int]] = []
    for g, d in enumerate(descs):
        start = sb.group_start(g)
        count = min(sb.per_group, sb.blocks - start)
        if csum_groups and struct.unpack_from("<H", d, 0x12)[0] & BG_BLOCK_UNINIT:
            free.append((start * bs, (start + count) * bs))
            continue
        where = _u32_pair(d, 0, 0x20, sb.desc_size)
        bitmap = exact(read, where * bs, bs, f"block bitmap of group {g}")
        if crc is not None:
            stored = struct.unpack_from("<H", d, 0x18)[0]
            got = crc(seed, bitmap[:sb.per_group // 8])
            if sb.desc_size >= 0x3C:
                stored |= struct.unpack_from("<H", d, 0x38)[0] << 16
            else:
                got &= 0xFFFF
            if got != stored:
                raise ReadWhole(f"block bitmap checksum mismatch in group {g}")
        free.extend(free_runs(bitmap, count, bs, base=start * bs))
    free = subtract(free, [(b * bs, (b + n) * bs) for b, n in meta])
    _check_counts(sb, descs, free)
    return Allocation(clip(free, size), "ext block bitmaps")


def _superblock(raw: bytes) -> _Super:
    """The superblock's geometry, after refusing filesystems whose bitmaps cannot be trusted."""
    (magic, state) = struct.unpack_from("<HH", raw, 0x38)
    if magic != MAGIC:
        raise ReadWhole("no ext2/3/4 superblock")
    compat, incompat, ro_compat = struct.unpack_from("<III", raw, 0x5C)
    rev = struct.unpack_from("<I", raw, 0x4C)[0]
    if rev == 0:
        compat = incompat = ro_compat = 0
    for name, value, known in (("incompat", incompat, INCOMPAT_KNOWN), ("ro_compat", ro_compat, RO_KNOWN)):
        unknown = value & ~known
        if unknown:
            bit = unknown & -unknown
            raise ReadWhole(f"unsupported feature {UNSUPPORTED_NAMES.get((name, bit), f'{name} {bit:#x}')}")
    if incompat & INCOMPAT_RECOVER:
        raise ReadWhole("journal needs recovery")
    if state & 2:
        raise ReadWhole("filesystem has errors")
    if not state & 1:
        raise ReadWhole("filesystem was not unmounted cleanly")
    inodes, blocks, _, free, _, first_data, log_block = struct.unpack_from("<IIIIIII", raw, 0)
    per_group, inodes_per_group = struct.unpack_from("<I", raw, 0x20)[0], struct.unpack_from("<I", raw, 0x28)[0]
    inode_size = struct.unpack_from("<H", raw, 0x58)[0] if rev else 128
    desc_size = 32
    if incompat & INCOMPAT_64BIT:
        blocks |= struct.unpack_from("<I", raw, 0x150)[0] << 32
        free |= struct.unpack_from("<I", raw, 0x158)[0] << 32
        desc_size = struct.unpack_from("<H", raw, 0xFE)[0]
        if desc_size < 64 or desc_size > 1024 or desc_size & (desc_size - 1):
            raise ReadWhole("superblock damaged: descriptor size")
    if log_block > 6:
        raise ReadWhole("superblock damaged: block size")
    bs = 1024 << log_block
    if not (8 <= per_group <= 8 * bs) or per_group % 8 or first_data >= blocks or first_data > 1:
        raise ReadWhole("superblock damaged: block groups")
    if inode_size < 128 or inode_size > bs or inode_size & (inode_size - 1) or not 0 < inodes_per_group <= 8 * bs:
        raise ReadWhole("superblock damaged: inodes")
    groups = -(-(blocks - first_data) // per_group)
    if inodes != groups * inodes_per_group:
        raise ReadWhole("superblock damaged: inode count")
    reserved_gdt = struct.unpack_from("<H", raw, 0xCE)[0] if compat & COMPAT_RESIZE_INODE else 0
    backup = struct.unpack_from("<II", raw, 0x24C)
    return _Super(bs, blocks, first_data, per_group, groups, desc_size,
                  -(-inodes_per_group * inode_size // bs), reserved_gdt, compat, incompat, ro_compat, free,
                  struct.unpack_from("<I", raw, 0x104)[0], (backup[0], backup[1]), raw)


def _per_block(sb: _Super) -> int:
    return sb.block_size // sb.desc_size


def _desc_blocks(sb: _Super) -> int:
    return -(-sb.groups // _per_block(sb))


def _descriptor_table(read: Read, sb: _Super) -> bytes:
    """All group descriptors; with meta_bg, later descriptor blocks sit in the first group of each
    meta group (after its superblock backup, if any)."""
    bs, n = sb.block_size, _desc_blocks(sb)
    if not sb.incompat & INCOMPAT_META_BG:
        first = sb.first_data + 1
        if first + n > sb.blocks:
            raise ReadWhole("group descriptors out of bounds")
        return exact(read, first * bs, n * bs, "group descriptors")
    parts = []
    for i in range(n):
        if i < sb.first_meta_bg:
            block = sb.first_data + 1 + i
        else:
            group = i * _per_block(sb)
            block = sb.group_start(group) + sb.has_super(group)
        if block >= sb.blocks:
            raise ReadWhole("group descriptors out of bounds")
        parts.append(exact(read, block * bs, bs, "group descriptors"))
    return b"".join(parts)


def _u32_pair(d: bytes, lo: int, hi: int, desc_size: int) -> int:
    value = struct.unpack_from("<I", d, lo)[0]
    return value | struct.unpack_from("<I", d, hi)[0] << 32 if desc_size >= 64 else value


def _metadata(sb: _Super, descs: list[bytes]) -> list[tuple[int, int]]:
    """(first block, count) of every block the filesystem's own structures occupy, the way
    e2fsprogs reserves them; bitmaps and inode tables must lie inside the filesystem."""
    out = [(0, max(sb.first_data, -(-2048 // sb.block_size)))]  # boot block and superblock, whatever the fields say
    if sb.incompat & INCOMPAT_META_BG:
        old_blocks, per_meta = sb.first_meta_bg, _per_block(sb)
    else:
        old_blocks, per_meta = _desc_blocks(sb) + sb.reserved_gdt, 0
    for g, d in enumerate(descs):
        start = sb.group_start(g)
        has_super = sb.has_super(g)
        if has_super:
            out.append((start, 1))
        if per_meta and g // per_meta >= sb.first_meta_bg:
            if g % per_meta in (0, 1, per_meta - 1):
                out.append((start + has_super, 1))
        elif has_super:
            out.append((start + 1, min(old_blocks, sb.blocks - start - 1)))
        for lo, hi, n in ((0, 0x20, 1), (4, 0x24, 1), (8, 0x28, sb.inode_blocks)):
            block = _u32_pair(d, lo, hi, sb.desc_size)
            if block < sb.first_data or block + n > sb.blocks:
                raise ReadWhole(f"group {g} metadata out of bounds")
            out.append((block, n))
    return out


def _check_descriptor_checksums(sb: _Super, descs: list[bytes], crc: Crc | None, seed: int) -> None:
    """Descriptors must verify where the filesystem checksums them: a flipped BLOCK_UNINIT flag
    would otherwise free a whole group of data."""
    if sb.ro_compat & RO_METADATA_CSUM:
        if crc is None:
            return
        for g, d in enumerate(descs):
            c = crc(crc(seed, struct.pack("<I", g)), d[:0x1E] + b"\0\0" + d[0x20:])
            if c & 0xFFFF != struct.unpack_from("<H", d, 0x1E)[0]:
                raise ReadWhole(f"group descriptor checksum mismatch in group {g}")
    elif sb.ro_compat & RO_GDT_CSUM:
        base = _crc16(0xFFFF, sb.raw[0x68:0x78])
        for g, d in enumerate(descs):
            c = _crc16(_crc16(base, struct.pack("<I", g)), d[:0x1E])
            if sb.desc_size > 0x20:
                c = _crc16(c, d[0x20:])
            if c != struct.unpack_from("<H", d, 0x1E)[0]:
                raise ReadWhole(f"group descriptor checksum mismatch in group {g}")


def _check_counts(sb: _Super, descs: list[bytes], free: list[tuple[int, int]]) -> None:
    """Free blocks per group must equal the descriptor's count, and their sum the superblock's
    (within a little slack): a disagreement means damaged bitmaps or descriptors."""
    bs = sb.block_size
    counts = [0] * sb.groups
    for start, end in free:  # every range lies inside one group
        counts[(start // bs - sb.first_data) // sb.per_group] += (end - start) // bs
    for g, d in enumerate(descs):
        expected = struct.unpack_from("<H", d, 0xC)[0]
        if sb.desc_size >= 0x30:
            expected |= struct.unpack_from("<H", d, 0x2C)[0] << 16
        if counts[g] != expected:
            raise ReadWhole(f"free block count of group {g} disagrees with its bitmap")
    if abs(sum(counts) - sb.free) > max(16, sb.blocks >> 12):
        raise ReadWhole("free block count disagrees with the superblock")
