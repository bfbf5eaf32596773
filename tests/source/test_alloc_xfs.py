"""The XFS free-space reader against filesystems made by mkfs.xfs and filled through the kernel's
own XFS (a loop device): its free extents are xfs_db's, minus the free list's blocks; zeroing (or
junk-filling) them leaves xfs_repair -n clean and every file byte-identical; deleted files come
back as free; a dirty log, an external log, a realtime device, unknown features and damaged
metadata are refused rather than misread."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.allocation.model import Allocation, ReadWhole
from agent.source.allocation.xfs import free_space
from tests.source.alloc_helpers import assert_valid, filled_copy

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t, path=SBIN_PATH) for t in ("mkfs.xfs", "xfs_db", "xfs_repair", "xfs_io")),
    reason="needs xfsprogs (mkfs.xfs, xfs_db, xfs_repair, xfs_io)")
MiB = 1 << 20
# mkfs.xfs refuses filesystems under 300 MB unless it runs under fstests, which sets these
SMALL_FS = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}


def run(*args: str | os.PathLike, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PATH=SBIN_PATH, LC_ALL="C", **(env or {}))
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, env=full)


def can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("losetup", path=SBIN_PATH):
        return False
    with open("/proc/filesystems") as f:
        return "xfs" in f.read() or Path("/sys/module/xfs").exists()


needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root, loop devices and the kernel's XFS")


def mkxfs(path: Path, size: int = 64 * MiB, *opts: str) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    run("mkfs.xfs", "-q", *opts, path, env=SMALL_FS)
    return path


@contextlib.contextmanager
def mounted(image: Path, where: Path, readonly: bool = False):
    """The image on a loop device of its own, mounted; detached again however the block ends."""
    where.mkdir(exist_ok=True)
    dev = run("losetup", "-f", "--show", image).stdout.decode().strip()
    try:
        run("mount", "-t", "xfs", *(["-o", "ro"] if readonly else []), dev, where)
        try:
            yield where
        finally:
            run("umount", where)
    finally:
        run("losetup", "-d", dev)


def reader(path: Path):
    data = path.read_bytes()
    return (lambda off, n: data[off : off + n]), len(data)


def scan(path: Path) -> Allocation:
    read, size = reader(path)
    alloc = free_space(read, size)
    assert_valid(alloc, size)
    return alloc


def db(image: Path, *cmds: str) -> str:
    args = [a for c in cmds for a in ("-c", c)]
    return run("xfs_db", "-r", *args, image).stdout.decode()


def geometry(image: Path) -> tuple[int, int, int]:
    out = db(image, "sb 0", "print blocksize agblocks agcount")
    return tuple(int(re.search(rf"^{k} = (\d+)", out, re.M).group(1)) for k in ("blocksize", "agblocks", "agcount"))


def assert_matches_xfs_db(image: Path, alloc: Allocation) -> None:
    """xfs_db's freesp lists the bnobt's extents and the active AGFL blocks: ours are exactly the
    former; and each AGF's freeblks adds up to our total."""
    bs, agblocks, agcount = geometry(image)
    theirs = set()
    for line in db(image, "freesp -d").splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s*$", line)
        if m:
            ag, bno, n = map(int, m.groups())
            theirs.update(range(ag * agblocks + bno, ag * agblocks + bno + n))
    agfl, freeblks = set(), 0
    for ag in range(agcount):
        agf = db(image, f"agf {ag}", "print flfirst fllast flcount freeblks")
        first, last, count, free = (int(re.search(rf"{k} = (\d+)", agf).group(1))
                                    for k in ("flfirst", "fllast", "flcount", "freeblks"))
        freeblks += free
        slots = dict(map(int, p) for p in re.findall(r"(\d+):(\d+)", db(image, f"agfl {ag}", "print bno")))
        size = len(re.findall(r"\d+:(?:\d+|null)", db(image, f"agfl {ag}", "print bno")))
        for i in range(count):
            agfl.add(ag * agblocks + slots[(first + i) % size])
        assert (first + count - 1) % size == last
    ours = {b for lo, hi in alloc.free for b in range(lo // bs, hi // bs)}
    assert all(lo % bs == 0 == hi % bs for lo, hi in alloc.free)
    assert ours == theirs - agfl
    assert alloc.free_bytes == freeblks * bs


def repair_is_clean(image: Path) -> None:
    out = run("xfs_repair", "-n", image, check=False)
    text = out.stdout.decode() + out.stderr.decode()
    assert out.returncode == 0 and "ALERT" not in text, text


def assert_survives(image: Path, alloc: Allocation, files: dict[str, bytes], tmp: Path,
                    fills: tuple[int, ...] = (0x00, 0xAA)) -> None:
    """Zeros, then 0xAA junk, over every free range: xfs_repair -n is clean and every file reads back
    the same through a read-only kernel mount."""
    for byte in fills:
        copy = tmp / f"filled-{byte:02x}.img"
        filled_copy(image, alloc.free, byte, copy)
        repair_is_clean(copy)
        if files:
            with mounted(copy, tmp / "ro", readonly=True) as mnt:
                for name, data in files.items():
                    assert (mnt / name).read_bytes() == data, name
        assert scan(copy).free == alloc.free
        copy.unlink()


@pytest.mark.parametrize("opts", [(), ("-m", "rmapbt=1"), ("-m", "crc=0"), ("-b", "size=1024"),
                                  ("-s", "size=4096"), ("-d", "agcount=7")])  # 7 AGs: the last one is short
def test_fresh_filesystem_matches_xfs_db(tmp_path: Path, opts: tuple[str, ...]) -> None:
    image = mkxfs(tmp_path / "x.img", 128 * MiB, *opts)
    alloc = scan(image)
    assert_matches_xfs_db(image, alloc)
    assert alloc.method and alloc.excluded == []
    assert alloc.free[0][0] > 0
    assert_survives(image, alloc, {}, tmp_path, fills=(0xAA,))


@needs_mount
def test_deleted_files_are_free_and_live_ones_survive(tmp_path: Path) -> None:
    """Through the kernel: 8 MiB random files, 3000 one-block files in one directory (so one AG's
    free space tree grows a level once every other is deleted), then deletions. Every block of a
    deleted big file found in the image must be reported free (≥ 90%)."""
    image = mkxfs(tmp_path / "x.img", 128 * MiB)
    big = {f"big{i}": os.urandom(8 * MiB) for i in range(6)}
    small = {f"d/s{i:04}": os.urandom(4096) for i in range(3000)}
    gone = ("big1", "big3", "big4", *list(small)[::2])
    with mounted(image, tmp_path / "mnt") as mnt:
        (mnt / "d").mkdir()
        for name, data in {**big, **small}.items():
            (mnt / name).write_bytes(data)
        run("sync")
        for name in gone:
            (mnt / name).unlink()
    alloc = scan(image)
    assert_matches_xfs_db(image, alloc)
    levels = [int(re.search(r"bnolevel = (\d+)", db(image, f"agf {ag}", "print bnolevel")).group(1))
              for ag in range(geometry(image)[2])]
    assert max(levels) >= 2, levels  # a node level was walked
    block = 4096
    deleted = {hashlib.sha256(big[n][i : i + block]).digest() for n in ("big1", "big3", "big4")
               for i in range(0, 8 * MiB, block)}
    raw = image.read_bytes()
    where = [o for o in range(0, len(raw), block) if hashlib.sha256(raw[o : o + block]).digest() in deleted]
    assert len(where) >= 0.9 * len(deleted)
    inside = sum(any(lo <= o and o + block <= hi for lo, hi in alloc.free) for o in where)
    assert inside >= 0.9 * len(deleted)
    live = {n: d for n, d in {**big, **small}.items() if n not in gone}
    assert_survives(image, alloc, live, tmp_path)


@needs_mount
def test_dirty_log_is_read_whole(tmp_path: Path) -> None:
    image = mkxfs(tmp_path / "x.img", 64 * MiB)
    with mounted(image, tmp_path / "mnt") as mnt:
        (mnt / "a").write_bytes(os.urandom(2 * MiB))
    scan(image)  # a clean unmount is clean
    with mounted(image, tmp_path / "mnt") as mnt:
        (mnt / "b").write_bytes(os.urandom(3 * MiB))
        run("sync")
        (mnt / "c").write_bytes(b"after the sync")
        run("xfs_io", "-x", "-c", "shutdown", mnt)
    out = run("xfs_repair", "-n", image, check=False)
    assert b"log" in out.stdout + out.stderr
    with pytest.raises(ReadWhole, match="^log needs recovery$"):
        scan(image)
    with mounted(image, tmp_path / "mnt"):  # the kernel replays the log; clean again afterwards
        pass
    assert_matches_xfs_db(image, scan(image))


def test_external_log_and_realtime_are_read_whole(tmp_path: Path) -> None:
    for name in ("log", "rt"):
        with open(tmp_path / name, "wb") as f:
            f.truncate(16 * MiB)
    image = mkxfs(tmp_path / "x.img", 64 * MiB, "-l", f"logdev={tmp_path / 'log'},size=8m")
    with pytest.raises(ReadWhole, match="^external log$"):
        scan(image)
    image = mkxfs(tmp_path / "y.img", 64 * MiB, "-r", f"rtdev={tmp_path / 'rt'}")
    with pytest.raises(ReadWhole, match="realtime"):
        scan(image)


def test_unknown_features_and_needsrepair_are_read_whole(tmp_path: Path) -> None:
    image = mkxfs(tmp_path / "x.img", 64 * MiB)
    incompat = int(re.search(r"= (0x[0-9a-f]+)", db(image, "sb 0", "print features_incompat")).group(1), 16)
    for extra, reason in ((0x10, "needing repair"), (1 << 20, "unknown incompatible features")):
        copy = tmp_path / "c.img"
        shutil.copyfile(image, copy)
        run("xfs_db", "-x", "-c", "sb 0", "-c", f"write -d features_incompat {incompat | extra:#x}", copy)
        with pytest.raises(ReadWhole, match=reason):
            scan(copy)


def test_not_xfs_and_truncated(tmp_path: Path) -> None:
    with pytest.raises(ReadWhole):
        free_space(lambda off, n: bytes(n), 1 * MiB)
    image = mkxfs(tmp_path / "x.img", 64 * MiB)
    raw = image.read_bytes()
    with pytest.raises(ReadWhole, match="larger than its partition"):
        free_space(lambda off, n: raw[off : off + n], len(raw) - 4096)
    for cut in (0, 511, 600, 4096 * 3, len(raw) // 4 + 512, len(raw) // 2):  # the superblock or an AGF
        with pytest.raises(ReadWhole):
            free_space(lambda off, n, c=cut: raw[off : min(off + n, c)], len(raw))
    for cut in range(0, len(raw), 1531 * 1024):  # a cut anywhere: refused, or an answer within the size
        try:
            assert_valid(free_space(lambda off, n, c=cut: raw[off : min(off + n, c)], len(raw)), len(raw))
        except ReadWhole:
            pass


@pytest.fixture(scope="module")
def small_fs(tmp_path_factory) -> tuple[bytes, list[int]]:
    """A small filesystem and the offsets of what the reader parses: superblock, AGFs, bnobt roots,
    the log's first blocks and those at its head."""
    tmp = tmp_path_factory.mktemp("xfs")
    image = mkxfs(tmp / "x.img", 64 * MiB)
    bs, agblocks, agcount = geometry(image)
    spots = [0]
    for ag in range(agcount):
        spots.append(ag * agblocks * bs + 512)
        root = int(re.search(r"bnoroot = (\d+)", db(image, f"agf {ag}", "print bnoroot")).group(1))
        spots.append((ag * agblocks + root) * bs)
    sb = db(image, "sb 0", "print logstart agblklog")
    logstart, agblklog = (int(re.search(rf"{k} = (\d+)", sb).group(1)) for k in ("logstart", "agblklog"))
    log = ((logstart >> agblklog) * agblocks + (logstart & ((1 << agblklog) - 1))) * bs
    spots += [log, log + 512, log + 1024]
    return image.read_bytes(), spots


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_metadata_is_read_whole_or_valid(small_fs: tuple[bytes, list[int]], data) -> None:
    clean, spots = small_fs
    raw = bytearray(clean)
    for _ in range(data.draw(st.integers(1, 6))):
        off = data.draw(st.sampled_from(spots)) + data.draw(st.integers(0, 511))
        raw[off] ^= data.draw(st.integers(1, 255))
    try:
        alloc = free_space(lambda o, n: bytes(raw[o : o + n]), len(raw))
    except ReadWhole as exc:
        assert str(exc)
        return
    assert_valid(alloc, len(raw))


@needs_mount
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8})?", fullmatch=True),
                             st.tuples(st.integers(0, 3 * MiB), st.integers(0, 2**32)), min_size=1, max_size=6),
       fill=st.sampled_from([0x00, 0xAA]))
def test_generated_trees_survive_zeroing(tmp_path: Path, files: dict[str, tuple[int, int]], fill: int) -> None:
    work = tmp_path / hashlib.sha256(repr((sorted(files.items()), fill)).encode()).hexdigest()[:12]
    work.mkdir()
    image = mkxfs(work / "x.img", 64 * MiB)
    contents: dict[str, bytes] = {}
    with mounted(image, work / "mnt") as mnt:
        for name, (size, seed) in files.items():
            path = mnt / name
            if any(p in contents for p in [name.split("/")[0]]) or path.parent.is_file():
                continue  # a name used both as a file and a directory
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                continue
            contents[name] = hashlib.shake_256(seed.to_bytes(8, "little")).digest(size) if size else b""
            path.write_bytes(contents[name])
    alloc = scan(image)
    assert_matches_xfs_db(image, alloc)
    assert_survives(image, alloc, contents, work, fills=(fill,))
    shutil.rmtree(work)
