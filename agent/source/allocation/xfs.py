"""XFS free space from each allocation group's free-space B+tree by block number (bnobt).

The superblock gives the geometry; each AG's AGF (its second sector) gives the bnobt's root and
height and the AG's free block count, which the tree's records must add up to. Blocks on the AG
free list (AGFL) are left as used, and the internal log is allocated, so neither is in the tree.

The log must be clean: the last record before the log head has to be an unmount record, as
xfsprogs decides it; otherwise metadata changes may still wait in the log and the trees on disk
are not the truth. Realtime devices and external logs are not followed. Every block number,
count, level and magic is checked before use; v5 blocks must also name themselves and their AG.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.source.allocation.model import Allocation, Read, ReadWhole

# (offset, format) of the xfs_dsb fields read: magic, blocksize, dblocks, rblocks, uuid, logstart,
# agblocks, agcount, logblocks, versionnum, sectsize, blocklog, sectlog, agblklog, inprogress,
# features_incompat, meta_uuid
_SB_FIELDS = ((0, "4s"), (4, "I"), (8, "Q"), (16, "Q"), (32, "16s"), (48, "Q"), (84, "I"), (88, "I"), (96, "I"),
              (100, "H"), (102, "H"), (120, "B"), (121, "B"), (124, "B"), (126, "B"), (216, "I"), (248, "16s"))
_AGF = struct.Struct(">4sIIII8xI20xI")  # magic, version, seqno, length, bno root, bno level, freeblks
_BLOCK = struct.Struct(">4sHHII")  # short-form btree block: magic, level, numrecs, left/right sibling
_BLOCK5 = struct.Struct(">Q8x16sI")  # v5 addition after the v4 header: blkno, lsn, uuid, owner
_REC = struct.Struct(">II")  # free extent: start block in the AG, length (also a node's key)
_BE32 = struct.Struct(">I")
_LOG_HEADER = struct.Struct(">IIIIQQIII")  # magic, cycle, version, len, lsn, tail lsn, crc, prev, num ops
_OP_FLAGS = 9  # oh_flags within a log operation header (after oh_tid, oh_len, oh_clientid)

_LOG_MAGIC = 0xFEEDBABE
_UNMOUNT_TRANS = 0x20
_BB = 512  # log basic block
_LOG_SCAN = 4096  # BBs around the head checked for torn writes: 8 in-core logs of 256 KiB (xfsprogs)
_CYCLE_SIZE = 32768  # XLOG_HEADER_CYCLE_SIZE: one header block per 32 KiB of a v2 record
_MAX_LEVELS = 10
# v5 incompat features that leave the AGF and bnobt as this reader knows them: ftype, sparse
# inodes, meta_uuid, bigtime, nrext64, exchange-range, parent pointers. NEEDSREPAIR is not here.
_KNOWN_INCOMPAT = 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80
_META_UUID = 0x4


@dataclass(frozen=True)
class _Sb:
    block: int  # bytes per block
    sector: int
    dblocks: int
    agblocks: int
    agcount: int
    agblklog: int
    v5: bool
    uuid: bytes  # what v5 metadata blocks carry (the metadata UUID)
    log_offset: int  # bytes
    log_blocks: int  # filesystem blocks


def free_space(read: Read, size: int) -> Allocation:
    """Free byte ranges of the XFS filesystem in `read` (`size` bytes); ReadWhole when its log is
    dirty, it has a realtime device or external log, or its metadata is damaged or unknown."""
    sb = _superblock(read, size)
    _check_log(read, sb)
    log_lo, log_hi = sb.log_offset, sb.log_offset + sb.log_blocks * sb.block
    free: list[tuple[int, int]] = []
    for agno in range(sb.agcount):
        base = agno * sb.agblocks * sb.block
        for start, count in _ag_free(read, sb, agno):
            lo, hi = base + start * sb.block, base + (start + count) * sb.block
            if lo < log_hi and log_lo < hi:
                raise ReadWhole("XFS free space overlaps the log")
            if free and free[-1][1] == lo:
                free[-1] = (free[-1][0], hi)
            else:
                free.append((lo, hi))
    return Allocation(free=free, method="XFS free space btrees (bnobt)")


def _superblock(read: Read, size: int) -> _Sb:
    raw = read(0, 512)
    if len(raw) < 512 or raw[:4] != b"XFSB":
        raise ReadWhole("no XFS superblock")
    (_, block, dblocks, rblocks, uuid, logstart, agblocks, agcount, logblocks, versionnum, sector,
     blocklog, sectlog, agblklog, inprogress, incompat, meta_uuid) = (
        struct.unpack_from(">" + fmt, raw, off)[0] for off, fmt in _SB_FIELDS)
    version = versionnum & 0xF
    if version not in (4, 5):
        raise ReadWhole(f"XFS version {version} is not supported")
    if not 9 <= blocklog <= 16 or block != 1 << blocklog or not 9 <= sectlog <= 15 or sector != 1 << sectlog \
            or sector > block:
        raise ReadWhole("XFS superblock has an unknown block or sector size")
    if not agcount or agblocks < 5 or agblklog != (agblocks - 1).bit_length() \
            or not (agcount - 1) * agblocks < dblocks <= agcount * agblocks:
        raise ReadWhole("XFS superblock has a bad allocation group geometry")
    if dblocks * block > size:
        raise ReadWhole("XFS filesystem is larger than its partition")
    if inprogress:
        raise ReadWhole("XFS filesystem was never finished by mkfs")
    if version == 5 and incompat & 0x10:
        raise ReadWhole("XFS filesystem is marked as needing repair")
    if version == 5 and incompat & ~_KNOWN_INCOMPAT:
        raise ReadWhole(f"XFS has unknown incompatible features {incompat & ~_KNOWN_INCOMPAT:#x}")
    if rblocks:
        raise ReadWhole("XFS has a realtime device")
    if not logstart:
        raise ReadWhole("external log")
    ag, agbno = logstart >> agblklog, logstart & ((1 << agblklog) - 1)
    if ag >= agcount or not logblocks or agbno + logblocks > min(agblocks, dblocks - ag * agblocks):
        raise ReadWhole("XFS log lies outside its allocation group")
    return _Sb(block, sector, dblocks, agblocks, agcount, agblklog, version == 5,
               meta_uuid if version == 5 and incompat & _META_UUID else uuid,
               (ag * agblocks + agbno) * block, logblocks)


# ---- the log ------------------------------------------------------------------------------------

def _check_log(read: Read, sb: _Sb) -> None:
    """ReadWhole unless the log ends in an unmount record: find the head (where the cycle number
    stamped on every 512-byte block drops), make sure the blocks around it were all written in
    order, then look at the last record header before it."""
    total = sb.log_blocks * sb.block // _BB

    def cycle(bb: int) -> int:
        raw = read(sb.log_offset + bb * _BB, 8)
        if len(raw) != 8:
            raise ReadWhole("XFS log is cut short")
        word, second = struct.unpack(">II", raw)
        return second if word == _LOG_MAGIC else word

    first, last = cycle(0), cycle(total - 1)
    if first == last:
        head = total
    elif last == first - 1:
        lo, hi = 0, total - 1  # cycle(lo) == first, cycle(hi) == first - 1: find the first drop
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if cycle(mid) == first else (lo, mid)
        head = hi
    else:
        raise ReadWhole("log needs recovery")
    before = _log_read(read, sb, max(0, head - _LOG_SCAN), head)
    after = _log_read(read, sb, head, min(total, head + _LOG_SCAN))
    if any(c != first for c in _cycles(before)) or any(c != first - 1 for c in _cycles(after)):
        raise ReadWhole("log needs recovery")  # a torn write near the head: xfsprogs would recover

    # the last record header before the head, possibly wrapped round to the end of the log
    for back in range(1, min(total, _LOG_SCAN) + 1):
        bb = (head - back) % total
        raw = read(sb.log_offset + bb * _BB, _BB)
        if len(raw) == _BB and _BE32.unpack_from(raw)[0] == _LOG_MAGIC:
            break
    else:
        raise ReadWhole("log needs recovery")
    _, rec_cycle, version, length, _, _, _, _, ops = _LOG_HEADER.unpack_from(raw)
    h_size = _BE32.unpack_from(raw, 320)[0]
    blocks = -(-h_size // _CYCLE_SIZE) if version & 2 and h_size > _CYCLE_SIZE else 1
    end = bb + blocks + -(-length // _BB)
    if rec_cycle != (first if bb < head else first - 1) or ops != 1 or end % total != head % total \
            or length < 12:
        raise ReadWhole("log needs recovery")
    op = read(sb.log_offset + (bb + blocks) % total * _BB, _BB)
    if len(op) != _BB or not op[_OP_FLAGS] & _UNMOUNT_TRANS:
        raise ReadWhole("log needs recovery")


def _log_read(read: Read, sb: _Sb, lo: int, hi: int) -> bytes:
    raw = read(sb.log_offset + lo * _BB, (hi - lo) * _BB)
    if len(raw) != (hi - lo) * _BB:
        raise ReadWhole("XFS log is cut short")
    return raw


def _cycles(raw: bytes) -> list[int]:
    """The cycle number of each 512-byte log block in `raw`."""
    out = []
    for pos in range(0, len(raw), _BB):
        word = _BE32.unpack_from(raw, pos)[0]
        out.append(_BE32.unpack_from(raw, pos + 4)[0] if word == _LOG_MAGIC else word)
    return out


# ---- allocation groups --------------------------------------------------------------------------

def _ag_free(read: Read, sb: _Sb, agno: int) -> list[tuple[int, int]]:
    """(start block in the AG, blocks) of every free extent of AG `agno`, in order, from its bnobt;
    ReadWhole when the tree is damaged or disagrees with the AGF's free count."""
    base = agno * sb.agblocks * sb.block
    raw = read(base + sb.sector, sb.sector)
    if len(raw) < _AGF.size:
        raise ReadWhole("XFS allocation group header is cut short")
    magic, version, seqno, length, root, level, freeblks = _AGF.unpack_from(raw)
    expect_len = min(sb.agblocks, sb.dblocks - agno * sb.agblocks)
    if magic != b"XAGF" or version != 1 or seqno != agno or length != expect_len:
        raise ReadWhole(f"XFS allocation group {agno} has a damaged header")
    if sb.v5 and raw[64:80] != sb.uuid:
        raise ReadWhole(f"XFS allocation group {agno} belongs to another filesystem")
    # the AG headers (superblock, AGF, AGI, AGFL: one sector each) are never free
    first_free = -(-4 * sb.sector // sb.block)
    if not 1 <= level <= _MAX_LEVELS or not first_free <= root < length:
        raise ReadWhole(f"XFS allocation group {agno} has a damaged free space tree root")

    magic_want, header = (b"AB3B", 56) if sb.v5 else (b"ABTB", 16)
    maxrecs = (sb.block - header) // _REC.size
    maxptrs = (sb.block - header) // (_REC.size + 4)
    seen = {root}
    level_blocks = [root]
    records: list[tuple[int, int]] = []
    for want_level in range(level - 1, -1, -1):
        children: list[int] = []
        for bno in level_blocks:
            blk = read(base + bno * sb.block, sb.block)
            if len(blk) != sb.block:
                raise ReadWhole("XFS free space tree lies past the end of the partition")
            got_magic, got_level, numrecs, _, _ = _BLOCK.unpack_from(blk)
            if got_magic != magic_want or got_level != want_level:
                raise ReadWhole(f"XFS allocation group {agno} has a damaged free space tree")
            if sb.v5:
                blkno, uuid, owner = _BLOCK5.unpack_from(blk, 16)
                if blkno * 512 != base + bno * sb.block or uuid != sb.uuid or owner != agno:
                    raise ReadWhole(f"XFS allocation group {agno} has a misplaced free space tree block")
            if want_level == 0:
                if numrecs > maxrecs:
                    raise ReadWhole(f"XFS allocation group {agno} has a damaged free space tree")
                records += _REC.iter_unpack(blk[header : header + numrecs * _REC.size])
            else:
                if not 1 <= numrecs <= maxptrs:
                    raise ReadWhole(f"XFS allocation group {agno} has a damaged free space tree")
                ptrs = header + maxptrs * _REC.size
                for (child,) in struct.iter_unpack(">I", blk[ptrs : ptrs + 4 * numrecs]):
                    if not first_free <= child < length or child in seen:
                        raise ReadWhole(f"XFS allocation group {agno} has a damaged free space tree")
                    seen.add(child)
                    children.append(child)
        level_blocks = children

    end, total = first_free, 0
    for start, count in records:
        if start < end or not count or start + count > length:
            raise ReadWhole(f"XFS allocation group {agno} has overlapping or misplaced free extents")
        end = start + count
        total += count
    if total != freeblks:
        raise ReadWhole(f"XFS allocation group {agno}: free space tree and counter disagree "
                        f"({total} and {freeblks} blocks)")
    for bno in seen:  # the tree's own blocks cannot be free
        if _inside(records, bno):
            raise ReadWhole(f"XFS allocation group {agno} lists its free space tree as free")
    return records


def _inside(records: list[tuple[int, int]], bno: int) -> bool:
    """Whether block `bno` lies in one of the sorted extents `records`."""
    lo, hi = 0, len(records)
    while lo < hi:
        mid = (lo + hi) // 2
        start, count = records[mid]
        if bno < start:
            hi = mid
        elif bno >= start + count:
            lo = mid + 1
        else:
            return True
    return False
