"""XFS, read by the agent's own reader (agent.browse.xfs), on real filesystems made by mkfs.xfs from
a protofile: `agent ls` lists exactly the tree written, `agent extract` gives it back byte for byte
with modes, owners, mtimes, symlinks and holes; v4 filesystems; a hand-built two-level bmbt; and
random damage to the metadata gives typed errors only, and ends."""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOOLS = ("mkfs.xfs", "xfs_db", "xfs_repair")
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS),
                                reason="mkfs.xfs, xfs_db or xfs_repair not installed (xfsprogs)")

SPARSE_TAIL = b"end of a sparse file\n"
LONG_TARGET = "/srv/" + "a-rather-long-directory-name/" * 14 + "target"  # > 336 bytes: kept in a block
OWNERS = {"etc/secret.key": (0, 42), "bin/tool.sh": (1000, 1000), "home/ann": (1000, 100),
          "home/ann/notes.txt": (1000, 100)}


# ---- building images ---------------------------------------------------------------------------------
def _protofile(src: Path, sources: dict[str, Path], owners: dict[str, tuple[int, int]]) -> str:
    """mkfs.xfs's protofile for the tree under `src`: modes from the files, owners from `owners`, file
    contents from the files themselves or from `sources` (relative path -> file to copy in)."""
    lines = ["agent-test", "0 0", "d--755 0 0"]

    def walk(d: Path, depth: int) -> None:
        for p in sorted(d.iterdir()):
            rel = str(p.relative_to(src))
            uid, gid = owners.get(rel, (0, 0))
            st_ = p.lstat()
            pad = "  " * depth
            if p.is_symlink():
                lines.append(f"{pad}{p.name} l--777 {uid} {gid} {os.readlink(p)}")
            elif p.is_fifo():
                lines.append(f"{pad}{p.name} p--{stat.S_IMODE(st_.st_mode):03o} {uid} {gid}")
            elif p.is_dir():
                lines.append(f"{pad}{p.name} d--{stat.S_IMODE(st_.st_mode):03o} {uid} {gid}")
                walk(p, depth + 1)
                lines.append(f"{pad}$")
            else:
                lines.append(f"{pad}{p.name} ---{stat.S_IMODE(st_.st_mode):03o} {uid} {gid} {sources.get(rel, p)}")

    walk(src, 1)
    return "\n".join([*lines, "$", ""])


def _mkfs(image: Path, proto: str, *options: str) -> None:
    (image.parent / "proto").write_text(proto)
    with open(image, "wb") as f:
        f.truncate(300 << 20)  # mkfs.xfs's smallest filesystem
    subprocess.run(["mkfs.xfs", "-q", *options, "-p", str(image.parent / "proto"), str(image)], check=True,
                   capture_output=True)


def _db(image: Path, *commands: str, expert: bool = False) -> str:
    args = ["xfs_db", "-x" if expert else "-r"]
    for c in commands:
        args += ["-c", c]
    return subprocess.run([*args, str(image)], check=True, capture_output=True, text=True).stdout


def _repair_ok(image: Path) -> None:
    res = subprocess.run(["xfs_repair", "-n", str(image)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _ino(image: Path, directory: str, name: str) -> int:
    m = re.search(rf"^\s*\d+\s+(\d+)\s+\S+\s+\S+\s+\d+\s+{re.escape(name)}\b", _db(image, f"ls {directory}"), re.M)
    assert m, f"xfs_db ls {directory} does not show {name}"
    return int(m.group(1))


def _bmap(image: Path, ino: int) -> list[tuple[int, int, int, int]]:
    """(file block, filesystem block, count, unwritten) of each extent, as xfs_db maps them."""
    out = _db(image, f"inode {ino}", "bmap")
    return [tuple(map(int, m)) for m in re.findall(r"data offset (\d+) startblock (\d+) \S+ count (\d+) flag (\d)",
                                                   out)]


def _byte(image: Path, what: str, number: int) -> int:
    return int(re.search(r"\((\d+)\)", _db(image, f"convert {what} {number} byte")).group(1))


_CRC_TABLE = [0] * 256
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    _CRC_TABLE[_i] = _c


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _give_remote_symlink_its_header(image: Path, ino: int, target: bytes) -> None:
    """mkfs.xfs 6.1 writes a long symlink's block without the header v5 requires (xfs_repair rejects
    it); newer versions write it. Add it as the kernel would: magic, offset, length, CRC, uuid, owner,
    disk address."""
    [(_, fsblock, _, _)] = _bmap(image, ino)
    at = _byte(image, "fsblock", fsblock)
    with open(image, "r+b") as f:
        if os.pread(f.fileno(), 4, at) == b"XSLM":
            return
        sb = os.pread(f.fileno(), 512, 0)
        bs = struct.unpack_from(">I", sb, 4)[0]
        blk = bytearray(struct.pack(">4sIII16sQQQ", b"XSLM", 0, len(target), 0, sb[32:48], ino, at // 512, 0)
                        + target)
        blk += bytes(bs - len(blk))
        struct.pack_into("<I", blk, 12, _crc32c(bytes(blk)))
        os.pwrite(f.fileno(), bytes(blk), at)


def _make_sparse(image: Path, ino: int, size: int) -> None:
    """Turn a 3-block file into: block 0 as written, a hole, block 1 as an unwritten extent (its bytes
    on disk must read as zeros), a hole, block 2 at 20 MiB, and `size`: what a sparse file and a
    fallocate leave. The blocks stay the file's, so the filesystem stays consistent (rmapbt off)."""
    [(off, fsblock, count, flag)] = _bmap(image, ino)
    assert (off, count, flag) == (0, 3, 0)
    _db(image, f"inode {ino}", "write core.nextents 3", "write u3.bmx[0].blockcount 1",
        "write u3.bmx[1].startoff 2560", f"write u3.bmx[1].startblock {fsblock + 1}", "write u3.bmx[1].blockcount 1",
        "write u3.bmx[1].extentflag 1", "write u3.bmx[2].startoff 5120", f"write u3.bmx[2].startblock {fsblock + 2}",
        "write u3.bmx[2].blockcount 1", f"write core.size {size}", expert=True)


def _tree(src: Path, work: Path) -> dict[str, Path]:
    """The tree to write: files of several modes and owners, nested directories (shortform, block, and a
    3000-entry one in node form whose block map is a btree), a short and a long symlink, an empty file
    and directory, a sparse file, a 101 MiB file of random data. Returns the protofile's sources that
    differ from the expected files."""
    (src / "etc" / "nginx" / "sites").mkdir(parents=True)
    (src / "etc" / "nginx" / "nginx.conf").write_text("worker_processes 2;\n")
    (src / "etc" / "nginx" / "sites" / "default").write_text("server { listen 80; }\n" * 50)
    (src / "etc" / "secret.key").write_bytes(os.urandom(4096))
    (src / "etc" / "secret.key").chmod(0o600)
    (src / "etc" / "current").symlink_to("nginx/nginx.conf")
    (src / "etc" / "far").symlink_to(LONG_TARGET)
    (src / "etc" / "conf.d").mkdir()
    for i in range(20):  # too many for the inode: a single-block directory
        (src / "etc" / "conf.d" / f"setting-{i:02d}.conf").write_text(f"setting {i}\n")
    (src / "bin").mkdir()
    (src / "bin" / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "bin" / "tool.sh").chmod(0o755)
    (src / "home" / "ann").mkdir(parents=True)
    (src / "home" / "ann").chmod(0o750)
    (src / "home" / "ann" / "notes.txt").write_text("buy milk\n")
    (src / "var" / "empty").mkdir(parents=True)
    (src / "var" / "empty").chmod(0o700)
    (src / "var" / "log.old").write_bytes(b"")
    (src / "many").mkdir()
    for i in range(3000):  # each file's block lands between the directory's blocks: 40+ extents
        (src / "many" / f"entry-with-a-fairly-long-name-{i:05d}").write_text(f"{i}\n")
    with open(src / "sparse.img", "wb") as f:
        f.write(b"H" * 4096)
        f.seek(20 << 20)
        f.write(SPARSE_TAIL)
    (work / "three").write_bytes(b"H" * 4096 + b"U" * 4096 + SPARSE_TAIL)
    with open(src / "big.bin", "wb") as f:
        for _ in range(101):
            f.write(os.urandom(1 << 20))
    return {"sparse.img": work / "three"}


@pytest.fixture(scope="module")
def xfs(tmp_path_factory) -> tuple[Path, Path, float, float]:
    """(source tree, XFS image of it, time before mkfs, time after)."""
    d = tmp_path_factory.mktemp("xfs")
    src = d / "src"
    src.mkdir()
    sources = _tree(src, d)
    image = d / "xfs.img"
    before = time.time()
    # rmapbt off: _make_sparse edits extents; two 150 MiB AGs: mkfs.xfs 6.1 writes a file's data as
    # if it were one extent, so big.bin must fit in one
    _mkfs(image, _protofile(src, sources, OWNERS), "-m", "rmapbt=0", "-d", "agcount=2")
    after = time.time()
    _give_remote_symlink_its_header(image, _ino(image, "/etc", "far"), LONG_TARGET.encode())
    _make_sparse(image, _ino(image, "/", "sparse.img"), (src / "sparse.img").stat().st_size)
    _repair_ok(image)
    assert "btree" in _db(image, f"inode {_ino(image, '/', 'many')}", "print core.format")
    return src, image, before, after


# ---- the CLI on the big tree -------------------------------------------------------------------------
def test_xfs_lists_exactly_the_tree_and_extracts_every_file_identically(cli, tmp_path, xfs):
    src, image, before, after = xfs
    cli("init")
    cli("backup", str(image))
    res = cli("ls", "latest:/", "-R", "--json").json()
    assert res["filesystem"] == "xfs"
    listed = {e["path"]: e for e in res["entries"]}
    expected = {"/" + str(p.relative_to(src)): p for p in src.rglob("*")}
    assert set(listed) == set(expected)
    for path, p in expected.items():
        e, st_ = listed[path], p.lstat()
        kind = "symlink" if p.is_symlink() else "dir" if p.is_dir() else "file"
        assert e["type"] == kind, path
        assert (e["uid"], e["gid"]) == OWNERS.get(path[1:], (0, 0)), path
        assert before - 1 <= datetime.fromisoformat(e["mtime"]).timestamp() <= after + 1, path
        if kind == "symlink":
            assert e["target"] == os.readlink(p) and e["size"] == len(os.readlink(p)), path
        else:
            assert int(e["mode"], 8) == stat.S_IMODE(st_.st_mode), path
        if kind == "file":
            assert e["size"] == st_.st_size, path

    out = tmp_path / "out"
    res = cli("extract", "latest:/", "--to", str(out), "--json").json()
    files = [p for p in expected.values() if p.is_file() and not p.is_symlink()]
    assert res["failed"] == [] and res["files"] == len(files) and res["symlinks"] == 2
    for path, p in expected.items():
        q = out / path.lstrip("/")
        assert q.is_symlink() == p.is_symlink(), path
        if p.is_symlink():
            assert os.readlink(q) == os.readlink(p)
            continue
        assert stat.S_IMODE(q.stat().st_mode) == stat.S_IMODE(p.stat().st_mode), path
        assert abs(q.stat().st_mtime - datetime.fromisoformat(listed[path]["mtime"]).timestamp()) < 1e-3, path
        if p.is_file():
            assert q.read_bytes() == p.read_bytes(), path
    assert (out / "sparse.img").stat().st_blocks * 512 < 1 << 20, "the sparse file was written out in full"


def test_xfs_listing_one_directory_fetches_a_small_part_of_the_image(cli, xfs):
    _, image, _, _ = xfs
    cli("init")
    cli("backup", str(image))
    res = cli("ls", "latest:/etc", "--json").json()
    assert {e["name"] for e in res["entries"]} == {"nginx", "secret.key", "current", "far", "conf.d"}
    assert res["fetched_bytes"] < 16 << 20, res["fetched_bytes"]  # of a 300 MiB image holding 130 MiB
    one = cli("ls", "latest:/etc/far", "--json").json()["entries"]
    assert one[0]["type"] == "symlink" and one[0]["target"] == LONG_TARGET
    res = cli("ls", "latest:/etc/nope", check=False)
    assert res.code == 2 and "does not exist" in res.err


# ---- the reader directly -----------------------------------------------------------------------------
class _Image:
    """What a reader needs of agent.browse.image.Window (read, size), over an image file with some
    bytes replaced; it counts reads, and stops a reader that never ends."""

    def __init__(self, fd: int, size: int, patches: dict[int, int] | None = None, budget: int = 200_000) -> None:
        self.fd, self.size, self.patches, self.budget = fd, size, patches or {}, budget
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        if len(self.reads) > self.budget:
            raise RuntimeError("the reader does not stop reading")
        data = bytearray(os.pread(self.fd, max(0, min(length, self.size - offset)), offset))
        for at, value in self.patches.items():
            if offset <= at < offset + len(data):
                data[at - offset] = value
        return bytes(data)


def _open(path: Path):
    fd = os.open(path, os.O_RDONLY)
    return fd, os.fstat(fd).st_size


def _small_tree(src: Path) -> None:
    """A little of everything, and a directory in leaf form whose 400 long names fill 27 blocks, each
    its own extent (a file's block lands between them): too many for the inode, so a bmbt maps them."""
    (src / "docs" / "nested" / "deeper").mkdir(parents=True)
    (src / "docs" / "readme.txt").write_text("hello xfs\n")
    (src / "docs" / "data.bin").write_bytes(os.urandom(48 << 10))
    (src / "docs" / "link").symlink_to("readme.txt")
    (src / "docs" / "far").symlink_to(LONG_TARGET)
    (src / "docs" / "nested" / "deeper" / "leaf.txt").write_text("leaf\n")
    os.mkfifo(src / "docs" / "pipe", 0o640)
    (src / "empty").mkdir()
    (src / "dir").mkdir()
    for i in range(400):
        (src / "dir" / (f"{i:04d}-" + "long-name-" * 23)).write_text(f"{i}\n")


def _whole(fs, entry, chunk: int = 1 << 20, limit: int | None = None) -> bytes:
    """The file as read_file gives it (its data, in order; what it leaves out are holes), up to `limit`."""
    out = bytearray(min(entry.size, limit if limit is not None else entry.size))
    last = 0
    for off, data in fs.read_file(entry, chunk):
        assert off >= last and 0 < len(data) <= chunk and off + len(data) <= entry.size
        if off >= len(out):
            break
        out[off:off + len(data)] = data[:len(out) - off]
        last = off + len(data)
    return bytes(out)


def _read_everything(fs) -> dict[str, tuple]:
    """path -> (type, mode, size, target, the first 64 KiB): all a reader can be asked."""
    out = {}
    fs.stat("/")
    for e in fs.walk("/"):
        data = None
        if e.kind == "file":
            data = _whole(fs, e, 16 << 10, 64 << 10)
            assert fs.read_at(e, 0, 64 << 10) == data
        out[e.path] = (e.kind, e.mode, e.size, e.target, data)
    return out


def _expected(src: Path) -> dict[str, tuple]:
    out = {}
    for p in src.rglob("*"):
        kind = "symlink" if p.is_symlink() else "dir" if p.is_dir() else "other" if p.is_fifo() else "file"
        st_ = p.lstat()
        out["/" + str(p.relative_to(src))] = (
            kind, 0o777 if kind == "symlink" else stat.S_IMODE(st_.st_mode), len(os.readlink(p)) if kind == "symlink"
            else st_.st_size if kind == "file" else None, os.readlink(p) if kind == "symlink" else None,
            p.read_bytes()[:64 << 10] if kind == "file" else None)
    return out


def _same(got: dict[str, tuple], src: Path) -> None:
    expected = _expected(src)
    assert set(got) == set(expected)
    for path, (kind, mode, size, target, data) in expected.items():
        g = got[path]
        assert (g[0], g[1], g[3], g[4]) == (kind, mode, target, data), path
        assert size is None or g[2] == size, path


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """A small tree on XFS v5 with every feature current mkfs.xfs knows on (rmapbt and nrext64 too,
    where this mkfs.xfs has them), 1 KiB blocks in 4 KiB directory blocks."""
    d = tmp_path_factory.mktemp("small")
    src = d / "src"
    src.mkdir()
    _small_tree(src)
    image = d / "small.img"
    proto = _protofile(src, {}, {})
    features = ["-b", "size=1024", "-m", "crc=1,finobt=1,reflink=1,rmapbt=1,bigtime=1", "-i", "sparse=1"]
    try:
        _mkfs(image, proto, *features[:-1], "sparse=1,nrext64=1")
    except subprocess.CalledProcessError:  # mkfs.xfs before 5.19 has no nrext64
        _mkfs(image, proto, *features)
    _give_remote_symlink_its_header(image, _ino(image, "/docs", "far"), LONG_TARGET.encode())
    _repair_ok(image)
    assert "btree" in _db(image, f"inode {_ino(image, '/', 'dir')}", "print core.format")
    return src, image


def test_xfs_reader_reads_a_small_tree_with_every_feature(small):
    from agent.browse.xfs import XfsFilesystem

    src, image = small
    fd, size = _open(image)
    try:
        _same(_read_everything(XfsFilesystem(_Image(fd, size), "small")), src)
    finally:
        os.close(fd)


def test_xfs_v4_without_ftype(tmp_path):
    """The older format: no CRC headers, 256-byte inodes, no file type in directory entries; and
    directory blocks of several filesystem blocks."""
    from agent.browse.xfs import XfsFilesystem

    src = tmp_path / "src"
    src.mkdir()
    _small_tree(src)
    image = tmp_path / "v4.img"
    try:
        _mkfs(image, _protofile(src, {}, {}), "-m", "crc=0", "-i", "size=256", "-n", "ftype=0", "-b",
              "size=1024")  # directory blocks of 4 filesystem blocks
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"this mkfs.xfs makes no v4 filesystems: {exc.stderr}")
    _repair_ok(image)
    fd, size = _open(image)
    try:
        _same(_read_everything(XfsFilesystem(_Image(fd, size), "v4")), src)
    finally:
        os.close(fd)


def test_xfs_file_mapped_by_a_two_level_bmbt(small):
    """mkfs.xfs cannot fragment a file, so build the btree by hand over a real one: its 48 blocks
    re-mapped through an in-inode root, a node block and a leaf of 32 one-block extents (every third
    block a hole, every third unwritten), in two free blocks at the end of AG 0."""
    from agent.browse.xfs import XfsFilesystem

    src, image = small
    ino = _ino(image, "/docs", "data.bin")
    [(_, first, count, _)] = _bmap(image, ino)
    fd, size = _open(image)
    try:
        sb = os.pread(fd, 512, 0)
        bs, agblocks, isize = (struct.unpack_from(f, sb, at)[0] for f, at in ((">I", 4), (">I", 84), (">H", 104)))
        node, leaf = agblocks - 2, agblocks - 1  # AG 0: filesystem block number = block in the AG
        assert os.pread(fd, 2 * bs, node * bs) == bytes(2 * bs), "the blocks chosen are not free"
        records = [(i, first + i, i % 3 == 2) for i in range(count) if i % 3 != 1]

        def block(level: int, body: bytes) -> bytes:
            hdr = struct.pack(">4sHHqqQQ16sQII", b"BMA3", level, len(records) if level == 0 else 1, -1, -1,
                              0, 0, sb[32:48], ino, 0, 0)
            return (hdr + body).ljust(bs, b"\0")

        room = (bs - 72) // 16
        leaf_recs = b"".join(struct.pack(">QQ", (unwritten << 63) | (off << 9) | (blk >> 43),
                                         ((blk & ((1 << 43) - 1)) << 21) | 1) for off, blk, unwritten in records)
        patches = bytearray(block(1, struct.pack(">Q", 0).ljust(room * 8, b"\0") + struct.pack(">Q", leaf))
                            + block(0, leaf_recs))
        at = {node * bs + i: b for i, b in enumerate(patches)}
        inode = _byte(image, "inode", ino)
        core = bytearray(os.pread(fd, isize, inode))
        assert core[82] == 0, "the inode has an attribute fork"
        core[5] = 3  # di_format: btree
        nrext64 = struct.unpack_from(">Q", core, 120)[0] & 0x10
        struct.pack_into(">Q" if nrext64 else ">I", core, 24 if nrext64 else 76, len(records))
        fork_room = (isize - 176 - 4) // 16
        core[176:] = (struct.pack(">HHQ", 2, 1, 0).ljust(4 + fork_room * 8, b"\0") + struct.pack(">Q", node)
                      ).ljust(isize - 176, b"\0")
        at.update({inode + i: b for i, b in enumerate(core)})
        fs = XfsFilesystem(_Image(fd, size, at), "bmbt")
        entry = fs.stat("/docs/data.bin")
        want = bytearray((src / "docs" / "data.bin").read_bytes())
        for i in range(count):
            if i % 3:
                want[i * bs:(i + 1) * bs] = bytes(bs)
        assert _whole(fs, entry, 5000) == bytes(want)
        assert fs.read_at(entry, bs * 3 - 10, 20) == want[bs * 3 - 10:bs * 3 + 10]
    finally:
        os.close(fd)


def test_xfs_directory_that_contains_its_parent_is_corrupt_not_endless(small):
    """/docs/nested's entry "deeper" made to name /docs: a loop a walk must not follow forever."""
    from agent.browse.xfs import XfsFilesystem
    from agent.errors import CorruptObject

    _, image = small
    docs, nested = _ino(image, "/", "docs"), _ino(image, "/docs", "nested")
    fd, size = _open(image)
    try:
        at = _byte(image, "inode", nested) + 176  # the shortform directory in v3 inode's data fork
        sf = os.pread(fd, 64, at)
        assert sf[0] == 1 and sf[1] == 0 and sf[6] == len("deeper")  # one entry, 4-byte inode numbers
        ino_at = at + 6 + 3 + len("deeper") + 1  # count, i8count, parent; namelen, offset, name, ftype
        assert int.from_bytes(sf[ino_at - at:ino_at - at + 4], "big") == _ino(image, "/docs/nested", "deeper")
        fs = XfsFilesystem(_Image(fd, size, dict(zip(range(ino_at, ino_at + 4), docs.to_bytes(4, "big")))), "loop")
        assert fs.stat("/docs/nested/deeper/nested/deeper").inode == docs
        with pytest.raises(CorruptObject, match="contains itself"):
            list(fs.walk("/"))
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def metadata(small) -> tuple[Path, int, int, list[int]]:
    """(source, fd, size, every byte offset the reader reads as metadata while walking the tree, plus
    AG 0's headers)."""
    from agent.browse.xfs import XfsFilesystem

    src, image = small
    fd, size = _open(image)
    img = _Image(fd, size)
    list(XfsFilesystem(img, "clean").walk("/"))
    offsets = set(range(2048))  # superblock, AGF, AGI, AGFL
    for off, n in img.reads:
        offsets.update(range(off, off + n))
    yield src, fd, size, sorted(offsets)
    os.close(fd)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=12))
def test_damaged_xfs_metadata_gives_typed_errors_and_ends(metadata, damage):
    from agent.browse.xfs import XfsFilesystem
    from agent.errors import CorruptObject, FilesystemError, UsageError

    _, fd, size, offsets = metadata
    img = _Image(fd, size, {offsets[i % len(offsets)]: value for i, value in damage})
    try:
        _read_everything(XfsFilesystem(img, "damaged"))
    except (CorruptObject, FilesystemError, UsageError):
        pass
