"""NTFS free space from the cluster bitmap ($Bitmap), found through the MFT's own records.

The boot sector gives the geometry and where the MFT starts; MFT record 0 maps the rest of the MFT
(it may be fragmented, and its runs may continue in extension records named by an attribute list),
record 6 maps $Bitmap. Record 3 ($Volume) says whether Windows left the volume dirty, $LogFile
whether changes wait in the journal, and the root directory's hiberfil.sys whether Windows is
hibernated (Fast Startup): each means the bitmap on disk may not be the truth. Unless asked to
keep them, the clusters of pagefile.sys, hiberfil.sys and swapfile.sys count as free: Windows
recreates their contents, and their MFT records stay, so the files still exist after a restore,
full of zeros.

Every record is fixed up and every offset, length and run is checked against the record and the
volume before use; the boot sector, MFT, its mirror, $LogFile and $Bitmap must be marked in use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.source.allocation.bits import free_runs
from agent.source.allocation.model import Allocation, Read, ReadWhole
from agent.source.skipmap import merged

_BOOT = struct.Struct("<3s8sHBH5xB18xQQQb3xb")  # jump, OEM id ... clusters per index record
_RECORD = struct.Struct("<4sHH8xHHHHII")  # magic, usa offset/count, seq, links, attrs, flags, used, size
_ATTR = struct.Struct("<IIBBHH")  # type, length, non-resident, name length, name offset, flags
_RESIDENT = struct.Struct("<IH")  # value length, value offset (at 0x10)
_NONRESIDENT = struct.Struct("<QQH6xQQQ")  # lowest/highest VCN, runs offset, allocated/data/init sizes
_LIST_ENTRY = struct.Struct("<IHBBQQ")  # attribute list: type, length, name length/offset, VCN, record
_INDEX_HDR = struct.Struct("<III")  # entries offset, index length, allocated size
_ENTRY = struct.Struct("<QHHI")  # index entry: file reference, length, key length, flags
_RESTART_AREA = struct.Struct("<QHHHH")  # current LSN, clients, free list, in-use list, flags
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")

_MFT, _MFTMIRR, _LOGFILE, _VOLUME, _ROOT, _BITMAP = 0, 1, 2, 3, 5, 6
_ATTR_LIST, _FILE_NAME, _VOLUME_INFO, _DATA, _INDEX_ROOT, _INDEX_ALLOC = 0x20, 0x30, 0x70, 0x80, 0x90, 0xA0
_END = 0xFFFFFFFF
_IN_USE = 0x0001
_VOLUME_IS_DIRTY = 0x0001
_ATTR_COMPRESSED, _ATTR_ENCRYPTED = 0x0001, 0x4000
_ENTRY_LAST = 0x02
_LOG_PAGE = 4096  # $LogFile restart pages, as every Windows since NT writes them
_NO_CLIENT = 0xFFFF
_RESTART_VOLUME_IS_CLEAN = 0x0002
_FIXUP_SECTOR = 512  # update sequence arrays protect every 512 bytes, whatever the sector size
_SWAP_FILES = ("pagefile.sys", "hiberfil.sys", "swapfile.sys")
_HIBERNATED = (b"hibr", b"wake")
_MAX_LIST = 1 << 20  # an attribute list or root index bigger than this is not believed
_MAX_ROOT_INDEX = 64 << 20
_MAX_RUNS = 1 << 20  # runs of one attribute
_I30 = "$I30".encode("utf-16-le")  # the name of a directory's file name index


@dataclass(frozen=True)
class _Geometry:
    cluster: int  # bytes per cluster
    clusters: int  # clusters in the volume (the bitmap's valid bits)
    record: int  # bytes per MFT record
    index_block: int  # bytes per index (INDX) block


def free_space(read: Read, size: int, *, keep_pagefile: bool = False) -> Allocation:
    """Free byte ranges of the NTFS volume in `read` (`size` bytes); ReadWhole when the volume is
    dirty, hibernated, damaged or not one this reader understands."""
    geo, mft_lcn, mirror_lcn, sector = _boot(read, size)
    mft = _Mft(read, geo, mft_lcn)
    volume = mft.record(_VOLUME)
    info = _resident(volume, _VOLUME_INFO)
    if info is None or len(info) < 12:
        raise ReadWhole("NTFS $Volume has no volume information")
    if _U16.unpack_from(info, 10)[0] & _VOLUME_IS_DIRTY:
        raise ReadWhole("volume is marked dirty (run chkdsk)")

    bitmap_runs, bitmap_size = mft.data_runs(_BITMAP)
    need = (geo.clusters + 7) // 8
    if bitmap_size < need:
        raise ReadWhole("NTFS $Bitmap is shorter than the volume")
    bitmap = _read_runs(read, geo, bitmap_runs, need)
    free = free_runs(bitmap, geo.clusters, geo.cluster)

    # the structures this reader walked must be in use, or the bitmap is not to be trusted
    logfile_runs, logfile_size = mft.data_runs(_LOGFILE)
    _check_logfile(read, geo, logfile_runs, logfile_size)
    vital = [(0, 1), *((lcn, lcn + n) for _, lcn, n in mft.runs), *bitmap_runs, *logfile_runs]
    mirror_runs, _ = mft.data_runs(_MFTMIRR)
    vital += mirror_runs
    if not mirror_runs or mirror_runs[0][0] != mirror_lcn:
        raise ReadWhole("NTFS $MFTMirr is not where the boot sector says")
    for lo, hi in vital:
        if _overlaps(free, lo * geo.cluster, hi * geo.cluster):
            raise ReadWhole("NTFS cluster bitmap marks its own metadata free")
    for backup_boot in (geo.clusters * geo.cluster, size // sector * sector - sector):  # either may hold it
        if _overlaps(free, backup_boot, backup_boot + sector):
            raise ReadWhole("NTFS cluster bitmap covers the backup boot sector")

    found = _root_files(mft, read, geo)
    hiber = found.get("hiberfil.sys")
    if hiber is not None and _first_bytes(read, geo, mft, hiber, 4).lower() in _HIBERNATED:
        raise ReadWhole("Windows is hibernated (Fast Startup): the volume's state is in hiberfil.sys")
    excluded: list[tuple[str, int]] = []
    if not keep_pagefile:
        extra: list[tuple[int, int]] = []
        for name in _SWAP_FILES:
            if name in found:
                runs, _ = mft.data_runs(found[name])
                ranges = [(lo * geo.cluster, hi * geo.cluster) for lo, hi in runs]
                if ranges:
                    extra += ranges
                    excluded.append((name, sum(hi - lo for lo, hi in ranges)))
        free = merged(free + extra)
    return Allocation(free=free, method="NTFS cluster bitmap ($Bitmap)", excluded=excluded)


def _boot(read: Read, size: int) -> tuple[_Geometry, int, int, int]:
    """Geometry from the boot sector, checked against itself and the partition."""
    raw = read(0, 512)
    if len(raw) < 512 or raw[3:11] != b"NTFS    " or raw[510:512] != b"\x55\xaa":
        raise ReadWhole("no NTFS boot sector")
    _, _, sector, spc, _, _, total, mft_lcn, mirror_lcn, per_record, per_index = _BOOT.unpack_from(raw)
    if spc > 0x80:  # 0xF4..0xFF: 2^-n, for clusters above 64 KiB
        spc = 1 << (256 - spc) if spc >= 0xF4 else 0
    cluster = sector * spc
    if sector not in (256, 512, 1024, 2048, 4096) or not spc or spc & (spc - 1) or cluster > 1 << 21:
        raise ReadWhole("NTFS boot sector has an unknown sector or cluster size")
    record = _size_field(per_record, cluster)
    index_block = _size_field(per_index, cluster)
    if record not in (1024, 2048, 4096) or not 512 <= index_block <= 1 << 16:
        raise ReadWhole("NTFS boot sector has an unknown MFT record size")
    if total * sector > size or total < spc:
        raise ReadWhole("NTFS volume is larger than its partition")
    clusters = total // spc
    if not 0 < mft_lcn < clusters or not 0 < mirror_lcn < clusters:
        raise ReadWhole("NTFS boot sector points outside the volume")
    return _Geometry(cluster, clusters, record, index_block), mft_lcn, mirror_lcn, sector


def _size_field(value: int, cluster: int) -> int:
    """Clusters per record, or, negative, 2^-value bytes (records smaller than a cluster)."""
    if value < 0:
        return 1 << -value if -value < 31 else 0
    return value * cluster


class _Mft:
    """MFT records by number, through the MFT's own runs (from record 0, and its extensions)."""

    def __init__(self, read: Read, geo: _Geometry, lcn: int) -> None:
        self._read, self._geo = read, geo
        # record 0 lies at the MFT's start, and its first $DATA extent maps at least the records
        # that hold the rest of the MFT's runs
        self.runs: list[tuple[int, int, int]] = [(0, lcn, max(1, -(-geo.record // geo.cluster)))]
        self.count = 1
        for typ, attr, name in _attrs(self.record(_MFT), _MFT):
            if typ == _DATA and not name and attr[8] and len(attr) >= 0x40:
                lowest, highest, runs_off = _NONRESIDENT.unpack_from(attr, 0x10)[:3]
                if lowest == 0:
                    self._map(_decode_runs(attr, runs_off, geo.clusters, _MFT))
        extents, data_size = self.extents(_MFT)
        self._map(extents)
        self.count = min(data_size // geo.record, self.count)
        if self.count < 16:
            raise ReadWhole("NTFS MFT is too small")

    def _map(self, extents: list[tuple[int | None, int]]) -> None:
        """Take `extents` (lcn or None, clusters) in VCN order as the MFT's map; no holes allowed."""
        vcn, mapped = 0, []
        for lcn, n in extents:
            if lcn is None:
                raise ReadWhole("NTFS MFT has a hole")
            mapped.append((vcn, lcn, n))
            vcn += n
        self.runs = mapped
        self.count = vcn * self._geo.cluster // self._geo.record

    def record(self, number: int) -> bytes:
        """MFT record `number`, fixed up and checked."""
        geo = self._geo
        start = number * geo.record
        parts, want = [], geo.record
        while want:
            vcn, off = divmod(start, geo.cluster)
            for first, lcn, length in self.runs:
                if first <= vcn < first + length:
                    take = min(want, (first + length - vcn) * geo.cluster - off)
                    chunk = self._read((lcn + vcn - first) * geo.cluster + off, take)
                    if len(chunk) != take:
                        raise ReadWhole("NTFS MFT record is cut short")
                    parts.append(chunk)
                    start, want = start + take, want - take
                    break
            else:
                raise ReadWhole(f"NTFS MFT record {number} lies outside the MFT")
        return _fixup(b"".join(parts), b"FILE", f"MFT record {number}")

    def attributes(self, number: int, kind: int) -> list[tuple[bytes, bytes]]:
        """(attribute, its name) of type `kind` with every extension record's share: (header and
        value bytes, UTF-16 name) in the base record `number` and those its attribute list names."""
        base = self.record(number)
        out = [a for a in _attrs(base, number) if a[0] == kind]
        lst = [a for a in _attrs(base, number) if a[0] == _ATTR_LIST]
        if not lst:
            return [(a[1], a[2]) for a in out]
        if len(lst) > 1:
            raise ReadWhole(f"NTFS MFT record {number} has two attribute lists")
        value = _value(self._read, self._geo, lst[0][1], _MAX_LIST, f"MFT record {number}")
        records, pos = set(), 0
        while pos + _LIST_ENTRY.size <= len(value):
            typ, length, _, _, _, ref = _LIST_ENTRY.unpack_from(value, pos)
            if length < _LIST_ENTRY.size or pos + length > len(value):
                raise ReadWhole(f"NTFS MFT record {number} has a damaged attribute list")
            if typ == kind and ref & (1 << 48) - 1 != number:
                records.add(ref & (1 << 48) - 1)
            pos += length
        for other in sorted(records):
            if other >= self.count:
                raise ReadWhole(f"NTFS attribute list of MFT record {number} points outside the MFT")
            rec = self.record(other)
            if _U64.unpack_from(rec, 0x20)[0] & (1 << 48) - 1 != number:
                raise ReadWhole(f"NTFS MFT record {other} is not an extension of record {number}")
            out += [a for a in _attrs(rec, other) if a[0] == kind]
        return [(a[1], a[2]) for a in out]

    def data_runs(self, number: int) -> tuple[list[tuple[int, int]], int]:
        """The clusters of record `number`'s unnamed $DATA as [lcn, lcn end) runs in file order
        (sparse runs left out), and its data size."""
        extents, size = self.extents(number)
        return [(lcn, lcn + n) for lcn, n in extents if lcn is not None], size

    def extents(self, number: int, kind: int = _DATA, name: bytes = b"") -> tuple[list[tuple[int | None, int]], int]:
        """Record `number`'s attribute `kind` named `name` (unnamed $DATA by default) as (lcn, or None
        when sparse, clusters) in VCN order, and its data size; ReadWhole when it is resident or its
        pieces do not fit together."""
        pieces = []
        for attr, attr_name in self.attributes(number, kind):
            if attr_name != name:
                continue
            if not attr[8]:
                raise ReadWhole(f"NTFS MFT record {number} has resident data where runs were expected")
            if len(attr) < 0x40:
                raise ReadWhole(f"NTFS MFT record {number} has a damaged attribute")
            pieces.append((_NONRESIDENT.unpack_from(attr, 0x10), attr))
        if not pieces:
            raise ReadWhole(f"NTFS MFT record {number} has no data")
        pieces.sort(key=lambda p: p[0][0])
        allocated, data_size = pieces[0][0][3], pieces[0][0][4]
        out: list[tuple[int | None, int]] = []
        vcn = 0
        for (lowest, highest, runs_off, _, _, _), attr in pieces:
            if lowest != vcn or highest < lowest - 1:
                raise ReadWhole(f"NTFS MFT record {number} has inconsistent runs")
            got = _decode_runs(attr, runs_off, self._geo.clusters, number)
            if sum(n for _, n in got) != highest - lowest + 1:
                raise ReadWhole(f"NTFS MFT record {number} has inconsistent runs")
            out += got
            vcn = highest + 1
        if vcn * self._geo.cluster != allocated or data_size > allocated:
            raise ReadWhole(f"NTFS MFT record {number} has runs that disagree with its size")
        return out, data_size


def _check_logfile(read: Read, geo: _Geometry, runs: list[tuple[int, int]], size: int) -> None:
    """ReadWhole unless $LogFile says Windows finished with the volume: the newer of its two restart
    pages must have no client in use or the clean flag (as ntfs-3g decides before mounting), or the
    log must be empty (all 0xFF, as ntfs-3g and mkntfs leave it)."""
    head = _read_runs(read, geo, runs, min(size, 2 * _LOG_PAGE))
    if head[:4] == b"\xff\xff\xff\xff" and head.count(0xFF) == len(head):
        return
    newest: tuple[int, int, int] | None = None
    for page in range(2):
        raw = head[page * _LOG_PAGE : (page + 1) * _LOG_PAGE]
        if raw[:4] == b"\xff\xff\xff\xff" and page:
            continue
        if raw[:4] != b"RSTR" or len(raw) < _LOG_PAGE or _U32.unpack_from(raw, 0x10)[0] != _LOG_PAGE:
            raise ReadWhole("NTFS $LogFile is not in a state this reader knows (run chkdsk)")
        fixed = _fixup(raw, b"RSTR", "$LogFile restart page", first_field=0x1E)
        area = _U16.unpack_from(fixed, 0x18)[0]
        if not 0x1E <= area <= _LOG_PAGE - 16:
            raise ReadWhole("NTFS $LogFile restart page is damaged")
        lsn, _, _, in_use, flags = _RESTART_AREA.unpack_from(fixed, area)
        if newest is None or lsn > newest[0]:
            newest = (lsn, in_use, flags)
    if newest is not None and newest[1] != _NO_CLIENT and not newest[2] & _RESTART_VOLUME_IS_CLEAN:
        raise ReadWhole("NTFS $LogFile has changes not yet applied (Windows did not shut down cleanly)")


def _fixup(raw: bytes, magic: bytes, what: str, first_field: int = 0x28) -> bytes:
    """Undo the update sequence: the last two bytes of every 512 carry a check number, and the real
    bytes wait in the array; a mismatch is a torn write."""
    if len(raw) < 48 or raw[:4] != magic:
        raise ReadWhole(f"NTFS {what} is damaged (bad magic)")
    usa, count = _U16.unpack_from(raw, 4)[0], _U16.unpack_from(raw, 6)[0]
    sectors = len(raw) // _FIXUP_SECTOR
    if count != sectors + 1 or usa < first_field or usa + 2 * count > _FIXUP_SECTOR - 2:
        raise ReadWhole(f"NTFS {what} is damaged (update sequence)")
    buf = bytearray(raw)
    check = raw[usa : usa + 2]
    for i in range(sectors):
        end = (i + 1) * _FIXUP_SECTOR
        if buf[end - 2 : end] != check:
            raise ReadWhole(f"NTFS {what} is damaged (torn write)")
        buf[end - 2 : end] = raw[usa + 2 + 2 * i : usa + 4 + 2 * i]
    return bytes(buf)


def _attrs(rec: bytes, number: int) -> list[tuple[int, bytes, bytes]]:
    """(type, attribute bytes, UTF-16 name) of an in-use FILE record, bounds-checked."""
    _, _, _, _, _, first, flags, used, allocated = _RECORD.unpack_from(rec)
    if not flags & _IN_USE:
        raise ReadWhole(f"NTFS MFT record {number} is not in use")
    if allocated != len(rec) or not 0x30 <= first < used <= len(rec):
        raise ReadWhole(f"NTFS MFT record {number} is damaged")
    out: list[tuple[int, bytes, bytes]] = []
    pos = first
    while True:
        if pos + 4 > used:
            raise ReadWhole(f"NTFS MFT record {number} is damaged (no end marker)")
        if struct.unpack_from("<I", rec, pos)[0] == _END:
            return out
        if pos + _ATTR.size > used:
            raise ReadWhole(f"NTFS MFT record {number} is damaged")
        typ, length, _, name_len, name_off, _ = _ATTR.unpack_from(rec, pos)
        if length < 0x18 or length % 8 or pos + length > used or name_off + 2 * name_len > length:
            raise ReadWhole(f"NTFS MFT record {number} has a damaged attribute")
        attr = rec[pos : pos + length]
        out.append((typ, attr, attr[name_off : name_off + 2 * name_len]))
        pos += length


def _resident(rec: bytes, kind: int, number: int = _VOLUME) -> bytes | None:
    """The value of the first resident attribute of type `kind`, or None."""
    for typ, attr, _ in _attrs(rec, number):
        if typ == kind and not attr[8]:
            return _resident_value(attr, number)
    return None


def _resident_value(attr: bytes, number: int) -> bytes:
    length, off = _RESIDENT.unpack_from(attr, 0x10)
    if off + length > len(attr):
        raise ReadWhole(f"NTFS MFT record {number} has a damaged attribute")
    return attr[off : off + length]


def _value(read: Read, geo: _Geometry, attr: bytes, limit: int, what: str) -> bytes:
    """An attribute's whole value, resident or not, up to `limit` bytes (else ReadWhole)."""
    if not attr[8]:
        return _resident_value(attr, -1)
    if len(attr) < 0x40:
        raise ReadWhole(f"NTFS {what} has a damaged attribute")
    lowest, highest, runs_off, allocated, data_size, _ = _NONRESIDENT.unpack_from(attr, 0x10)
    if lowest != 0 or data_size > limit or data_size > allocated:
        raise ReadWhole(f"NTFS {what} has an attribute this reader does not follow")
    runs = _decode_runs(attr, runs_off, geo.clusters, -1)
    if sum(n for _, n in runs) != highest + 1 or any(lcn is None for lcn, _ in runs):
        raise ReadWhole(f"NTFS {what} has inconsistent runs")
    return _read_runs(read, geo, [(lcn, lcn + n) for lcn, n in runs if lcn is not None], data_size)


def _decode_runs(attr: bytes, pos: int, clusters: int, number: int) -> list[tuple[int | None, int]]:
    """Mapping pairs: (lcn or None for a sparse run, clusters); each LCN is a signed delta from the
    previous one. Every run must lie inside the volume."""
    if not 0x40 <= pos <= len(attr):
        raise ReadWhole(f"NTFS MFT record {number} has damaged runs")
    out: list[tuple[int | None, int]] = []
    lcn = 0
    while True:
        if pos >= len(attr):
            raise ReadWhole(f"NTFS MFT record {number} has damaged runs")
        head = attr[pos]
        if head == 0:
            return out
        nlen, noff = head & 0xF, head >> 4
        if not 1 <= nlen <= 8 or noff > 8 or pos + 1 + nlen + noff > len(attr) or len(out) >= _MAX_RUNS:
            raise ReadWhole(f"NTFS MFT record {number} has damaged runs")
        count = int.from_bytes(attr[pos + 1 : pos + 1 + nlen], "little", signed=True)
        if count <= 0:
            raise ReadWhole(f"NTFS MFT record {number} has damaged runs")
        if noff:
            lcn += int.from_bytes(attr[pos + 1 + nlen : pos + 1 + nlen + noff], "little", signed=True)
            if lcn < 0 or lcn + count > clusters:
                raise ReadWhole(f"NTFS MFT record {number} has runs outside the volume")
            out.append((lcn, count))
        else:
            out.append((None, count))
        pos += 1 + nlen + noff


def _read_runs(read: Read, geo: _Geometry, runs: list[tuple[int, int]], length: int) -> bytes:
    """The first `length` bytes of the clusters in `runs`, in order."""
    parts, want = [], length
    for lo, hi in runs:
        if not want:
            break
        take = min(want, (hi - lo) * geo.cluster)
        chunk = read(lo * geo.cluster, take)
        if len(chunk) != take:
            raise ReadWhole("NTFS metadata lies past the end of the partition")
        parts.append(chunk)
        want -= take
    if want:
        raise ReadWhole("NTFS attribute is shorter than its size")
    return b"".join(parts)


def _overlaps(free: list[tuple[int, int]], lo: int, hi: int) -> bool:
    return any(a < hi and lo < b for a, b in free)


def _root_files(mft: _Mft, read: Read, geo: _Geometry) -> dict[str, int]:
    """MFT record numbers of pagefile.sys, hiberfil.sys and swapfile.sys in the root directory,
    from every entry of its $I30 index (the root node and every INDX block in use or not); an
    entry counts only when the record it names is in use, of the same sequence number, and has
    that name with the root as parent."""
    nodes = []
    for attr, name in mft.attributes(_ROOT, _INDEX_ROOT):
        if name == _I30 and not attr[8]:
            value = _resident_value(attr, _ROOT)
            if len(value) < 0x10 + _INDEX_HDR.size:
                raise ReadWhole("NTFS root directory index is damaged")
            nodes.append(_node_entries(value, 0x10))
    if not nodes:
        raise ReadWhole("NTFS root directory has no index")
    if any(name == _I30 for _, name in mft.attributes(_ROOT, _INDEX_ALLOC)):
        extents, size = mft.extents(_ROOT, _INDEX_ALLOC, _I30)
        if size > _MAX_ROOT_INDEX or any(lcn is None for lcn, _ in extents):
            raise ReadWhole("NTFS root directory index is too large or sparse")
        data = _read_runs(read, geo, [(lcn, lcn + n) for lcn, n in extents if lcn is not None], size)
        for off in range(0, len(data) - geo.index_block + 1, geo.index_block):
            block = data[off : off + geo.index_block]
            if block[:4] != b"INDX":
                continue  # never used: not an index block yet
            try:
                nodes.append(_node_entries(_fixup(block, b"INDX", "index block"), 0x18))
            except ReadWhole:
                continue  # an unused stale block; the live entries are in blocks that fix up
    found: dict[str, int] = {}
    for ref, file_name in (entry for node in nodes for entry in node):
        if file_name.lower() in _SWAP_FILES and _names_root_file(mft, ref, file_name):
            found[file_name.lower()] = ref & (1 << 48) - 1
    return found


def _node_entries(buf: bytes, header: int) -> list[tuple[int, str]]:
    """(file reference, name) of the entries of one index node whose header is at `header`."""
    first, length, _ = _INDEX_HDR.unpack_from(buf, header)
    pos, end = header + first, min(header + length, len(buf))
    out = []
    while pos + _ENTRY.size <= end:
        ref, size, key, flags = _ENTRY.unpack_from(buf, pos)
        if size < _ENTRY.size or pos + size > end:
            raise ReadWhole("NTFS root directory index is damaged")
        if flags & _ENTRY_LAST:
            break
        if key >= 0x42 and 0x10 + key <= size:
            n = buf[pos + 0x10 + 0x40]
            if 0x42 + 2 * n <= key:
                raw = buf[pos + 0x10 + 0x42 : pos + 0x10 + 0x42 + 2 * n]
                out.append((ref, raw.decode("utf-16-le", errors="replace")))
        pos += size
    return out


def _names_root_file(mft: _Mft, ref: int, name: str) -> bool:
    """Whether file reference `ref` is an in-use base record named `name` (any case) in the root."""
    number, seq = ref & (1 << 48) - 1, ref >> 48
    if not _BITMAP < number < mft.count:  # system files are never these
        return False
    try:
        rec = mft.record(number)
        if _U16.unpack_from(rec, 0x10)[0] != seq or _U64.unpack_from(rec, 0x20)[0]:
            return False
        for typ, attr, _ in _attrs(rec, number):
            if typ == _FILE_NAME and not attr[8]:
                value = _resident_value(attr, number)
                if len(value) >= 0x42 and 0x42 + 2 * value[0x40] <= len(value):
                    own = value[0x42 : 0x42 + 2 * value[0x40]].decode("utf-16-le", errors="replace")
                    if _U64.unpack_from(value, 0)[0] & (1 << 48) - 1 == _ROOT and own.lower() == name.lower():
                        return True
    except ReadWhole:
        return False
    return False


def _first_bytes(read: Read, geo: _Geometry, mft: _Mft, number: int, length: int) -> bytes:
    """The first bytes of a file's unnamed $DATA (b"" when it has none, zeros when sparse)."""
    for attr, name in mft.attributes(number, _DATA):
        if not name and not attr[8]:
            return _resident_value(attr, number)[:length]
    extents, size = mft.extents(number)
    if not size or not extents:
        return b""
    lcn = extents[0][0]
    return bytes(length) if lcn is None else read(lcn * geo.cluster, length)
