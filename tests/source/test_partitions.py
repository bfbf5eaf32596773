"""The partition-table parser: synthesized tables round-trip, garbage never raises, and a
real image made by sgdisk/mkfs agrees with what partx/blkid say about it."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.partitions import (
    GPT_TYPE_NAMES,
    MAX_GPT_PARTITIONS,
    MAX_LOGICAL_PARTITIONS,
    MBR_TYPE_NAMES,
    PartitionTable,
    human_size,
    read_partition_table,
)

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def have(*tools: str) -> bool:
    return all(shutil.which(t, path=SBIN_PATH) for t in tools)


def run(*args: str | os.PathLike) -> str:
    env = dict(os.environ, PATH=SBIN_PATH, LC_ALL="C")
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True, env=env
    ).stdout


# ---------------------------------------------------------------------------------------
# A sparse in-memory image and table synthesizers


@dataclass
class SparseImage:
    """Only written extents are stored, so a 'disk' can be terabytes at no cost."""

    size: int
    extents: dict[int, bytes] = field(default_factory=dict)
    bytes_read: int = 0

    def write(self, offset: int, data: bytes) -> None:
        assert offset >= 0 and offset + len(data) <= self.size
        self.extents[offset] = bytes(data)

    def read(self, offset: int, length: int) -> bytes:
        assert offset >= 0 and length >= 0
        self.bytes_read += length
        end = min(self.size, offset + length)
        if end <= offset:
            return b""
        buf = bytearray(end - offset)
        for start, data in self.extents.items():
            lo, hi = max(start, offset), min(start + len(data), end)
            if lo < hi:
                buf[lo - offset : hi - offset] = data[lo - start : hi - start]
        return bytes(buf)

    def parse(self) -> PartitionTable:
        return read_partition_table(self.read, self.size)


def mbr_entry(ptype: int, lba: int, sectors: int, status: int = 0) -> bytes:
    return struct.pack("<B3sB3sII", status, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", lba, sectors)


def mbr_sector(entries: list[bytes], disk_sig: int = 0) -> bytes:
    sector = bytearray(512)
    struct.pack_into("<I", sector, 440, disk_sig)
    for i, e in enumerate(entries):
        sector[446 + 16 * i : 462 + 16 * i] = e
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


@dataclass(frozen=True)
class GptPart:
    slot: int  # 0-based entry index; partition number is slot + 1
    first_lba: int
    last_lba: int
    type_guid: str
    guid: str
    name: str


def gpt_header(
    *,
    ss: int,
    my_lba: int,
    alt_lba: int,
    first_usable: int,
    last_usable: int,
    disk_guid: str,
    entries_lba: int,
    num_entries: int,
    entry_size: int,
    entries_crc: int,
) -> bytes:
    hdr = bytearray(92)
    struct.pack_into(
        "<8sIIIIQQQQ16sQIII",
        hdr,
        0,
        b"EFI PART",
        0x00010000,
        92,
        0,
        0,
        my_lba,
        alt_lba,
        first_usable,
        last_usable,
        uuid.UUID(disk_guid).bytes_le,
        entries_lba,
        num_entries,
        entry_size,
        entries_crc,
    )
    struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr)))
    return bytes(hdr) + bytes(ss - 92)


def make_gpt(
    parts: list[GptPart],
    *,
    ss: int,
    total_lbas: int,
    disk_guid: str,
    num_entries: int = 128,
    entry_size: int = 128,
) -> SparseImage:
    img = SparseImage(total_lbas * ss)
    array = bytearray(num_entries * entry_size)
    for p in parts:
        off = p.slot * entry_size
        struct.pack_into(
            "<16s16sQQQ",
            array,
            off,
            uuid.UUID(p.type_guid).bytes_le,
            uuid.UUID(p.guid).bytes_le,
            p.first_lba,
            p.last_lba,
            0,
        )
        name = p.name.encode("utf-16-le")[:72]
        array[off + 56 : off + 56 + len(name)] = name
    array_lbas = -(-len(array) // ss)
    last = total_lbas - 1
    common = dict(
        ss=ss,
        first_usable=2 + array_lbas,
        last_usable=last - 1 - array_lbas,
        disk_guid=disk_guid,
        num_entries=num_entries,
        entry_size=entry_size,
        entries_crc=zlib.crc32(bytes(array)),
    )
    img.write(0, mbr_sector([mbr_entry(0xEE, 1, min(total_lbas - 1, 0xFFFFFFFF))]))
    img.write(ss, gpt_header(my_lba=1, alt_lba=last, entries_lba=2, **common))
    img.write(2 * ss, bytes(array))
    img.write((last - array_lbas) * ss, bytes(array))
    img.write(
        last * ss, gpt_header(my_lba=last, alt_lba=1, entries_lba=last - array_lbas, **common)
    )
    return img


guids = st.uuids(version=4).map(lambda u: str(u).upper())
type_guids = st.one_of(st.sampled_from(sorted(GPT_TYPE_NAMES)), guids)
part_names = st.text(
    alphabet=st.characters(
        max_codepoint=0xFFFF, blacklist_categories=("Cs",), blacklist_characters="\x00"
    ),
    max_size=36,
)


@st.composite
def gpt_layouts(draw):
    ss = draw(st.sampled_from([512, 4096]))
    entry_size = draw(st.sampled_from([128, 256, 512]))
    n = draw(st.integers(0, 12))
    num_entries = draw(st.integers(max(n, 1), 256))
    slots = draw(st.lists(st.integers(0, num_entries - 1), min_size=n, max_size=n, unique=True))
    array_lbas = -(-num_entries * entry_size // ss)
    lba = 2 + array_lbas
    parts = []
    for slot in sorted(slots, key=lambda s: draw(st.integers(0, 1000))):
        lba += draw(st.integers(0, 1 << 20))
        length = draw(st.integers(1, 1 << 24))
        parts.append(
            GptPart(slot, lba, lba + length - 1, draw(type_guids), draw(guids), draw(part_names))
        )
        lba += length
    total = lba + array_lbas + 2 + draw(st.integers(0, 1 << 20))
    return parts, dict(
        ss=ss,
        total_lbas=total,
        disk_guid=draw(guids),
        num_entries=num_entries,
        entry_size=entry_size,
    )


def expected(parts: list[GptPart], ss: int) -> list[tuple]:
    return sorted(
        (
            p.slot + 1,
            p.first_lba * ss,
            (p.last_lba - p.first_lba + 1) * ss,
            p.type_guid,
            GPT_TYPE_NAMES.get(p.type_guid, "unknown"),
            p.name,
            p.guid,
        )
        for p in parts
    )


def observed(table: PartitionTable) -> list[tuple]:
    return [
        (p.number, p.start, p.size, p.type_id, p.type_name, p.name, p.guid)
        for p in table.partitions
    ]


def assert_sane(table: PartitionTable, size: int) -> None:
    """Whatever the input, the result is well-formed and serialisable."""
    assert table.scheme in ("gpt", "mbr", "none")
    assert table.sector_size in (512, 4096)
    json.dumps(table.to_dict())
    assert len(table.summary()) == len(table.partitions)
    assert len(table.partitions) <= MAX_GPT_PARTITIONS + 4 + MAX_LOGICAL_PARTITIONS
    for p in table.partitions:
        assert p.start >= 0 and p.size > 0 and p.start + p.size <= size


# ---------------------------------------------------------------------------------------
# GPT


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gpt_layouts())
def test_gpt_round_trips(layout):
    parts, geometry = layout
    img = make_gpt(parts, **geometry)
    table = img.parse()
    assert table.scheme == "gpt"
    assert table.sector_size == geometry["ss"]
    assert table.disk_guid == geometry["disk_guid"]
    assert table.warnings == ()
    assert observed(table) == expected(parts, geometry["ss"])
    assert all(p.filesystem is None for p in table.partitions)
    assert_sane(table, img.size)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gpt_layouts(), st.sampled_from(["header", "array", "signature", "wiped"]), st.data())
def test_corrupt_primary_falls_back_to_backup(layout, damage, data):
    parts, geometry = layout
    ss = geometry["ss"]
    img = make_gpt(parts, **geometry)
    if damage == "header":
        pos = ss + data.draw(st.integers(0, 91).filter(lambda i: not 16 <= i < 20), label="byte")
    elif damage == "array":
        pos = 2 * ss + data.draw(
            st.integers(0, geometry["num_entries"] * geometry["entry_size"] - 1), label="byte"
        )
    else:
        pos = ss
    original = img.read(pos, 1)[0]
    img.write(pos, bytes([original ^ 0xFF]) if damage != "wiped" else bytes(ss))
    table = img.parse()
    assert table.scheme == "gpt"
    assert observed(table) == expected(parts, ss)
    assert any("backup" in w for w in table.warnings), table.warnings


@given(gpt_layouts())
@settings(max_examples=30, deadline=None)
def test_damaged_backup_is_reported_but_primary_used(layout):
    parts, geometry = layout
    img = make_gpt(parts, **geometry)
    last = img.size - geometry["ss"]
    img.write(last, bytes(geometry["ss"]))
    table = img.parse()
    assert observed(table) == expected(parts, geometry["ss"])
    assert any("backup GPT header" in w for w in table.warnings)


def simple_gpt(ss: int = 512) -> tuple[SparseImage, list[GptPart]]:
    parts = [
        GptPart(
            0, 2048, 4095, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", str(uuid.uuid4()).upper(), "ESP"
        ),
        GptPart(
            1, 4096, 8191, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", str(uuid.uuid4()).upper(), "root"
        ),
    ]
    return make_gpt(parts, ss=ss, total_lbas=10000, disk_guid=str(uuid.uuid4()).upper()), parts


def test_partition_past_end_of_image_is_ignored_with_warning():
    img, parts = simple_gpt()
    shrunk = SparseImage(6000 * 512, {o: d for o, d in img.extents.items() if o < 6000 * 512})
    # Re-home the backup so the only problem left is p2 running off the end.
    table = shrunk.parse()
    assert [p.number for p in table.partitions] == [1]
    assert any("p2" in w and "end of the image" in w for w in table.warnings)
    assert any("backup GPT header" in w for w in table.warnings)


def test_hybrid_and_missing_protective_mbr_are_warned():
    img, _ = simple_gpt()
    img.write(0, mbr_sector([mbr_entry(0xEE, 1, 2047), mbr_entry(0x0C, 2048, 2048)]))
    assert any("hybrid" in w for w in img.parse().warnings)
    img.write(0, bytes(512))
    table = img.parse()
    assert table.scheme == "gpt"
    assert any("protective" in w for w in table.warnings)


def test_gpt_without_protective_mbr_does_not_use_stale_backup():
    """An MBR disk that once was GPT may keep a stale backup header at its end."""
    img, _ = simple_gpt()
    img.write(512, bytes(512))  # primary header gone
    img.write(0, mbr_sector([mbr_entry(0x83, 2048, 4096)]))
    table = img.parse()
    assert table.scheme == "mbr"
    assert [(p.number, p.type_name) for p in table.partitions] == [(1, "Linux")]


def test_bad_entry_geometry_is_rejected():
    for num_entries, entry_size in [(128, 64), (128, 130), (128, 8192), (100000, 4096)]:
        img, _ = simple_gpt()
        hdr = bytearray(img.read(512, 512))
        struct.pack_into("<II", hdr, 80, num_entries, entry_size)
        struct.pack_into("<I", hdr, 16, 0)
        struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr[:92])))
        img.write(512, bytes(hdr))
        table = img.parse()
        # The backup is intact, so the table survives, with a warning naming the problem.
        assert table.scheme == "gpt" and len(table.partitions) == 2
        assert any("entry" in w for w in table.warnings), table.warnings


def test_too_many_gpt_partitions_are_capped():
    n = MAX_GPT_PARTITIONS + 10
    parts = [
        GptPart(
            i,
            100 + i,
            100 + i,
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            str(uuid.UUID(int=i + 1)).upper(),
            "",
        )
        for i in range(n)
    ]
    img = make_gpt(
        parts, ss=512, total_lbas=2000, disk_guid=str(uuid.UUID(int=7)).upper(), num_entries=n
    )
    table = img.parse()
    assert len(table.partitions) == MAX_GPT_PARTITIONS
    assert any("more than" in w for w in table.warnings)


# ---------------------------------------------------------------------------------------
# MBR


MBR_DATA_TYPES = sorted(t for t in MBR_TYPE_NAMES if t not in (0x05, 0x0F, 0x85, 0xEE)) + [0x99]


@st.composite
def mbr_layouts(draw):
    """Primaries plus an optional extended partition holding a chain of logicals."""
    gap = st.integers(1, 4096)
    lba = draw(st.integers(1, 4096))
    n_primary = draw(st.integers(0, 3))
    with_extended = draw(st.booleans())
    slots = draw(st.permutations(range(4)))
    primaries, logicals = [], []
    for i in range(n_primary):
        size = draw(st.integers(1, 1 << 16))
        primaries.append((slots[i], draw(st.sampled_from(MBR_DATA_TYPES)), lba, size))
        lba += size + draw(gap)
    extended = None
    if with_extended:
        ext_start = cur = lba
        for _ in range(draw(st.integers(0, 6))):
            data_off = draw(st.integers(1, 2048))
            size = draw(st.integers(1, 1 << 16))
            logicals.append((cur, data_off, size, draw(st.sampled_from(MBR_DATA_TYPES))))
            cur += data_off + size + draw(gap)
        extended = (
            slots[n_primary],
            draw(st.sampled_from([0x05, 0x0F, 0x85])),
            ext_start,
            cur - ext_start + draw(gap),
        )
        lba = ext_start + extended[3]
    total = lba + draw(st.integers(1, 1 << 16))
    return primaries, extended, logicals, total, draw(st.integers(0, 0xFFFFFFFF))


def make_mbr(primaries, extended, logicals, total, disk_sig) -> SparseImage:
    img = SparseImage(total * 512)
    entries = [bytes(16)] * 4
    for slot, ptype, lba, size in primaries:
        entries[slot] = mbr_entry(ptype, lba, size)
    if extended:
        slot, ptype, ext_start, ext_size = extended
        entries[slot] = mbr_entry(ptype, ext_start, ext_size)
        for i, (ebr, data_off, size, ptype) in enumerate(logicals):
            chain = [mbr_entry(ptype, data_off, size)]
            if i + 1 < len(logicals):
                nxt = logicals[i + 1][0]
                chain.append(
                    mbr_entry(0x05, nxt - ext_start, logicals[i + 1][1] + logicals[i + 1][2])
                )
            img.write(ebr * 512, mbr_sector(chain))
    img.write(0, mbr_sector(entries, disk_sig))
    return img


@settings(max_examples=150, deadline=None)
@given(mbr_layouts())
def test_mbr_with_logical_partitions_round_trips(layout):
    primaries, extended, logicals, total, disk_sig = layout
    img = make_mbr(*layout)
    table = img.parse()
    assert table.scheme == "mbr"
    assert table.warnings == ()
    want = [(slot + 1, lba * 512, size * 512, f"0x{t:02x}") for slot, t, lba, size in primaries]
    if extended:
        slot, t, lba, size = extended
        want.append((slot + 1, lba * 512, size * 512, f"0x{t:02x}"))
        want += [
            (5 + i, (ebr + off) * 512, size * 512, f"0x{t:02x}")
            for i, (ebr, off, size, t) in enumerate(logicals)
        ]
    assert sorted((p.number, p.start, p.size, p.type_id) for p in table.partitions) == sorted(want)
    assert table.disk_guid == (f"{disk_sig:08x}" if disk_sig else None)
    for p in table.partitions:
        assert p.guid == (f"{disk_sig:08x}-{p.number:02x}" if disk_sig else None)
        if extended and p.number == extended[0] + 1:
            assert p.type_name == "extended"
    assert_sane(table, img.size)


@pytest.mark.skipif(not have("partx"), reason="partx (util-linux) not installed")
@settings(max_examples=25, deadline=None)
@given(mbr_layouts())
def test_mbr_agrees_with_partx(tmp_path_factory, layout):
    img = make_mbr(*layout)
    path = tmp_path_factory.mktemp("mbr") / "disk.img"
    with open(path, "wb") as f:
        f.truncate(img.size)
        for off, data in img.extents.items():
            f.seek(off)
            f.write(data)
    out = run("partx", "--show", "--noheadings", "--bytes", "-o", "NR,START,SECTORS,TYPE", path)
    theirs = sorted(
        (int(nr), int(start) * 512, int(sectors) * 512, int(t, 16))
        for nr, start, sectors, t in (line.split() for line in out.splitlines())
    )
    ours = sorted((p.number, p.start, p.size, int(p.type_id, 16)) for p in img.parse().partitions)
    assert ours == theirs


def test_ebr_loop_is_stopped():
    img = SparseImage(100000 * 512)
    img.write(0, mbr_sector([mbr_entry(0x83, 2048, 1000), mbr_entry(0x05, 10000, 50000)]))
    # Two EBRs pointing at each other.
    img.write(10000 * 512, mbr_sector([mbr_entry(0x83, 63, 100), mbr_entry(0x05, 1000, 200)]))
    img.write(11000 * 512, mbr_sector([mbr_entry(0x83, 63, 100), mbr_entry(0x05, 0, 200)]))
    table = img.parse()
    assert [p.number for p in table.partitions] == [1, 2, 5, 6]
    assert any("loops" in w for w in table.warnings)


def test_long_ebr_chain_is_capped():
    n = MAX_LOGICAL_PARTITIONS + 20
    img = SparseImage((10 + 4 * n) * 512 + 4096)
    img.write(0, mbr_sector([mbr_entry(0x05, 10, 4 * n)]))
    for i in range(n):
        img.write(
            (10 + 4 * i) * 512, mbr_sector([mbr_entry(0x83, 1, 2), mbr_entry(0x05, 4 * (i + 1), 4)])
        )
    table = img.parse()
    assert len(table.partitions) == 1 + MAX_LOGICAL_PARTITIONS
    assert any("logical" in w for w in table.warnings)


def test_protective_mbr_without_gpt_is_none_with_warning():
    img = SparseImage(1 << 20)
    img.write(0, mbr_sector([mbr_entry(0xEE, 1, 2047)]))
    table = img.parse()
    assert table.scheme == "none" and table.partitions == ()
    assert table.warnings


def test_tiny_and_empty_images():
    assert read_partition_table(lambda o, n: b"", 0).scheme == "none"
    assert read_partition_table(lambda o, n: bytes(n), 100).scheme == "none"
    assert SparseImage(1 << 40).parse() == PartitionTable("none", 512, None, (), ())


def test_read_errors_propagate():
    def failing(offset: int, length: int) -> bytes:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        read_partition_table(failing, 1 << 20)


# ---------------------------------------------------------------------------------------
# Robustness: arbitrary and mutated bytes


def bytes_reader(data: bytes):
    return lambda off, n: data[off : off + n]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=20000), st.integers(0, 1 << 42))
def test_random_bytes_never_raise(data, extra):
    size = len(data) + (extra if extra % 3 == 0 else 0)
    def padded(off, n):
        return data[off : off + n] + bytes(max(0, min(n, size - off) - len(data[off : off + n])))

    table = read_partition_table(padded, size)
    assert_sane(table, size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        gpt_layouts().map(lambda lay: make_gpt(lay[0], **lay[1])),
        mbr_layouts().map(lambda lay: make_mbr(*lay)),
    ),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=20),
)
def test_mutated_tables_never_raise(img, mutations):
    """Flip bytes inside the metadata the parser actually looks at."""
    offsets = sorted(img.extents)
    for i, value in mutations:
        base = offsets[i % len(offsets)]
        data = bytearray(img.extents[base])
        data[(i // len(offsets)) % len(data)] = value
        img.extents[base] = bytes(data)
    img.bytes_read = 0
    table = img.parse()
    assert_sane(table, img.size)
    assert img.bytes_read < 64 << 20  # bounded work, whatever the headers claim


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=0, max_size=0x11000), st.sampled_from([0, 1024, 0x10000, 3, 4086, 0x10040])
)
def test_garbage_filesystems_never_raise(blob, magic_at):
    """A valid table pointing at partitions full of garbage (with a plausible magic)."""
    img, _ = simple_gpt()
    magic = {
        0: b"LUKS\xba\xbeXFSB",
        1024: b"H+",
        3: b"EXFAT   ",
        4086: b"SWAPSPACE2",
        0x10040: b"_BHRfS_M",
        0x10000: b"x",
    }
    img.write(2048 * 512, blob)
    img.write(2048 * 512 + magic_at, magic[magic_at])
    img.write(4096 * 512, b"\xeb\x3c\x90" + blob[:600])
    assert_sane(img.parse(), img.size)


# ---------------------------------------------------------------------------------------
# Filesystems made by the real tools, and a real image


def test_human_size():
    assert human_size(0) == "0 B"
    assert human_size(1 << 20) == "1.0 MiB"
    assert human_size(257 << 20) == "257 MiB"
    assert human_size(3 << 40) == "3.0 TiB"


def whole_disk_gpt_with(fs_file: Path, tmp_path: Path) -> PartitionTable:
    """Wrap a filesystem image as partition 1 of a synthesized GPT and parse it."""
    data = fs_file.read_bytes()
    lbas = len(data) // 512
    img = make_gpt(
        [
            GptPart(
                0,
                2048,
                2048 + lbas - 1,
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                str(uuid.UUID(int=1)).upper(),
                "p",
            )
        ],
        ss=512,
        total_lbas=2048 + lbas + 2048,
        disk_guid=str(uuid.UUID(int=2)).upper(),
    )
    img.write(2048 * 512, data[: 256 << 10])  # superblocks and root directories live here
    return img.parse()


@pytest.mark.skipif(not have("mke2fs"), reason="e2fsprogs not installed")
@pytest.mark.parametrize("kind", ["ext2", "ext3", "ext4"])
def test_ext_generations_are_told_apart(tmp_path, kind):
    fs = tmp_path / "fs"
    with open(fs, "wb") as f:
        f.truncate(8 << 20)
    run(
        "mke2fs",
        "-q",
        "-F",
        "-t",
        kind,
        "-L",
        f"lbl-{kind}",
        "-U",
        "0b1e4c2a-7d3e-4a55-9f00-123456789abc",
        fs,
    )
    (p,) = whole_disk_gpt_with(fs, tmp_path).partitions
    assert (p.filesystem, p.fs_label, p.fs_uuid) == (
        kind,
        f"lbl-{kind}",
        "0b1e4c2a-7d3e-4a55-9f00-123456789abc",
    )


@pytest.mark.skipif(not have("mkfs.vfat", "mcopy"), reason="dosfstools/mtools not installed")
@pytest.mark.parametrize("bits,mib", [(12, 2), (16, 16), (32, 64)])
def test_fat_variants(tmp_path, bits, mib):
    fs = tmp_path / "fs"
    run("mkfs.vfat", "-C", "-F", str(bits), "-n", "MYDISK", "-i", "1234abcd", fs, str(mib * 1024))
    (p,) = whole_disk_gpt_with(fs, tmp_path).partitions
    assert (p.filesystem, p.fs_version, p.fs_label, p.fs_uuid) == (
        "vfat",
        f"FAT{bits}",
        "MYDISK",
        "1234-ABCD",
    )


@pytest.mark.skipif(not have("mkfs.vfat", "mlabel"), reason="dosfstools/mtools not installed")
def test_fat_label_from_root_directory_wins(tmp_path):
    """Relabelling tools update the root directory entry; the boot sector copy goes stale."""
    fs = tmp_path / "fs"
    run("mkfs.vfat", "-C", "-n", "OLD", fs, "8192")
    env = dict(os.environ, PATH=SBIN_PATH, MTOOLS_SKIP_CHECK="1")
    subprocess.run(
        ["mlabel", "-i", str(fs), "::NEWLABEL"], check=True, env=env, capture_output=True
    )
    with open(fs, "r+b") as f:  # as Windows leaves it: only the directory entry renamed
        f.seek(43)
        f.write(b"STALE      ")
    assert whole_disk_gpt_with(fs, tmp_path).partitions[0].fs_label == "NEWLABEL"


@pytest.mark.skipif(not have("mkswap"), reason="mkswap not installed")
def test_swap(tmp_path):
    fs = tmp_path / "fs"
    with open(fs, "wb") as f:
        f.truncate(4 << 20)
    run("mkswap", "-L", "myswap", "-U", "0b1e4c2a-7d3e-4a55-9f00-123456789abc", fs)
    (p,) = whole_disk_gpt_with(fs, tmp_path).partitions
    assert (p.filesystem, p.fs_label, p.fs_uuid) == (
        "swap",
        "myswap",
        "0b1e4c2a-7d3e-4a55-9f00-123456789abc",
    )


@pytest.mark.skipif(not have("mkfs.vfat"), reason="dosfstools not installed")
def test_whole_disk_filesystem_is_not_an_mbr(tmp_path):
    fs = tmp_path / "fs"
    run("mkfs.vfat", "-C", fs, "8192")
    data = fs.read_bytes()
    table = read_partition_table(bytes_reader(data), len(data))
    assert table.scheme == "none" and table.warnings == ()


@pytest.mark.parametrize(
    "magic_off,magic,extra,kind",
    [
        (
            0,
            b"LUKS\xba\xbe\x00\x02",
            {168: b"5f2d3c1e-0000-4000-8000-000000000001", 24: b"vault"},
            "LUKS",
        ),
        (0, b"XFSB", {108: b"xfslabel"}, "xfs"),
        (0x10040, b"_BHRfS_M", {0x1012B: b"btrlabel"}, "btrfs"),
        (
            512,
            b"LABELONE",
            {512 + 20: struct.pack("<I", 32), 512 + 24: b"LVM2 001", 512 + 32: b"a" * 32},
            "LVM2 PV",
        ),
        (3, b"NTFS    ", {0x48: struct.pack("<Q", 0x1122334455667788)}, "ntfs"),
    ],
)
def test_synthetic_superblocks(magic_off, magic, extra, kind):
    img, _ = simple_gpt()
    base = 2048 * 512
    img.write(base + magic_off, magic)
    for off, data in extra.items():
        img.write(base + off, data)
    p = img.parse().partitions[0]
    assert p.filesystem == kind
    if kind == "LUKS":
        assert (p.fs_label, p.fs_uuid, p.fs_version) == (
            "vault",
            "5f2d3c1e-0000-4000-8000-000000000001",
            "v2",
        )
    if kind == "ntfs":
        assert p.fs_uuid == "1122334455667788"
    if kind == "LVM2 PV":
        assert p.fs_uuid == "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"


@pytest.fixture(scope="module")
def sample_image(tmp_path_factory):
    from tests.diskimage import MissingTool, build_sample_image

    try:
        return build_sample_image(tmp_path_factory.mktemp("img") / "disk.img", marker=b"MARK")
    except MissingTool as exc:
        pytest.skip(str(exc))


def parse_file(path: Path) -> PartitionTable:
    with open(path, "rb") as f:
        return read_partition_table(
            lambda off, n: os.pread(f.fileno(), n, off), path.stat().st_size
        )


def test_real_image(sample_image):
    table = parse_file(sample_image.path)
    assert table.scheme == "gpt" and table.sector_size == 512 and table.warnings == ()
    esp, root = table.partitions
    assert (esp.number, esp.start, esp.size) == (1, sample_image.esp.start, sample_image.esp.size)
    assert (root.number, root.start, root.size) == (
        2,
        sample_image.root.start,
        sample_image.root.size,
    )
    assert (esp.type_name, esp.filesystem, esp.fs_label) == ("EFI System", "vfat", "ESP")
    assert (root.type_name, root.filesystem, root.fs_label) == ("Linux filesystem", "ext4", "root")
    assert esp.type_id == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert root.type_id == "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    assert table.summary() == [
        "p1  1.0 MiB..17 MiB  16 MiB  EFI System  vfat (FAT16) 'ESP'",
        "p2  17 MiB..56 MiB  39 MiB  Linux filesystem \"Linux root\"  ext4 'root'",
    ]


@pytest.mark.skipif(not have("partx", "blkid"), reason="util-linux not installed")
def test_real_image_agrees_with_partx_and_blkid(sample_image):
    table = parse_file(sample_image.path)
    out = run(
        "partx", "--show", "--noheadings", "-o", "NR,START,SECTORS,TYPE,UUID", sample_image.path
    )
    theirs = [line.split() for line in out.splitlines()]
    ours = [
        [str(p.number), str(p.start // 512), str(p.size // 512), p.type_id.lower(), p.guid.lower()]
        for p in table.partitions
    ]
    assert ours == theirs
    for p in table.partitions:
        probe = run("blkid", "-p", "-O", str(p.start), "-o", "export", sample_image.path)
        fields = dict(line.split("=", 1) for line in probe.splitlines() if "=" in line)
        assert (fields["TYPE"], fields["LABEL"], fields["UUID"]) == (
            p.filesystem,
            p.fs_label,
            p.fs_uuid,
        )
