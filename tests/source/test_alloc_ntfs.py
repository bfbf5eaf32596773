"""The NTFS free-space reader against volumes made and filled by ntfs-3g's own tools: its free
count matches ntfsinfo's, zeroing (or junk-filling) every range it calls free leaves ntfsfix happy
and every file byte-identical, deleted files come back as free, pagefile.sys is left out unless
kept, and damaged, dirty or hibernated volumes are refused rather than misread."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.allocation.model import Allocation, ReadWhole
from agent.source.allocation.ntfs import free_space
from tests.source.alloc_helpers import assert_valid, filled_copy

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t, path=SBIN_PATH) for t in ("mkntfs", "ntfscp", "ntfscat", "ntfsinfo", "ntfsfix")),
    reason="needs ntfs-3g's tools (mkntfs, ntfscp, ntfscat, ntfsinfo, ntfsfix)")
MiB = 1 << 20
CLUSTER = 4096


def run(*args: str | os.PathLike, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=SBIN_PATH, LC_ALL="C")
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, env=env)


def mkntfs(path: Path, size: int = 64 * MiB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    run("mkntfs", "-Q", "-F", "-q", path)
    return path


def put(image: Path, name: str, data: bytes, tmp: Path) -> None:
    src = tmp / "src.bin"
    src.write_bytes(data)
    run("ntfscp", image, src, name)


def reader(path: Path):
    data = path.read_bytes()
    return (lambda off, n: data[off : off + n]), len(data)


def scan(path: Path, **kw) -> Allocation:
    read, size = reader(path)
    alloc = free_space(read, size, **kw)
    assert_valid(alloc, size)
    return alloc


def ntfsinfo_free_clusters(image: Path) -> int:
    out = run("ntfsinfo", "-m", image).stdout.decode()
    return int(re.search(r"Free Clusters:\s+(\d+)", out).group(1))


def assert_survives(image: Path, alloc: Allocation, files: dict[str, bytes], tmp: Path) -> None:
    """Zeros, then 0xAA junk, over every free range: ntfsfix -n is clean and every file reads back."""
    for byte in (0x00, 0xAA):
        copy = tmp / f"filled-{byte:02x}.img"
        filled_copy(image, alloc.free, byte, copy)
        fix = run("ntfsfix", "-n", copy, check=False)
        assert fix.returncode == 0, fix.stdout.decode() + fix.stderr.decode()
        for name, data in files.items():
            got = run("ntfscat", copy, name).stdout
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name
        assert scan(copy).free == alloc.free  # the metadata it read is unchanged
        copy.unlink()


class Ntfs3g:
    """An ntfs-3g FUSE mount, in the foreground so unmounting can wait for it to finish writing."""

    def __init__(self, image: Path, where: Path) -> None:
        self.where = where
        where.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(["ntfs-3g", "-o", "no_detach", str(image), str(where)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(200):
            if os.path.ismount(where):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"ntfs-3g failed: {self.proc.stderr.read().decode()}")
            subprocess.run(["sleep", "0.05"])
        raise AssertionError("ntfs-3g did not mount")

    def __enter__(self) -> Path:
        return self.where

    def __exit__(self, *exc) -> None:
        subprocess.run(["fusermount3", "-u", str(self.where)], check=True)
        assert self.proc.wait(timeout=30) == 0


def test_free_clusters_match_ntfsinfo(tmp_path: Path) -> None:
    image = mkntfs(tmp_path / "v.img")
    files = {f"/f{i}": os.urandom(n) for i, n in enumerate((0, 700, 5000, 3 * MiB + 17, 100_000))}
    for name, data in files.items():
        put(image, name.lstrip("/"), data, tmp_path)
    alloc = scan(image)
    assert alloc.free_bytes == ntfsinfo_free_clusters(image) * CLUSTER
    assert alloc.excluded == [] and alloc.method
    assert 0 < alloc.free_bytes < 64 * MiB - 3 * MiB
    assert alloc.free[0][0] > 0  # the boot sector is used
    assert_survives(image, alloc, files, tmp_path)


@pytest.mark.skipif(not shutil.which("ntfs-3g") or not os.path.exists("/dev/fuse"), reason="needs ntfs-3g FUSE")
def test_deleted_files_are_free_and_live_ones_survive(tmp_path: Path) -> None:
    """Written and deleted through ntfs-3g: 8 MiB random files, many small ones (the MFT grows past its
    first run), a subdirectory. Every cluster of a deleted file is found in the image and must be
    reported free (≥ 90% of them); the rest must read back after zeroing."""
    image = mkntfs(tmp_path / "v.img", 96 * MiB)
    big = {f"big{i}": os.urandom(8 * MiB) for i in range(6)}
    small = {f"d/s{i:03}": os.urandom(i * 97 % 5000) for i in range(300)}
    with Ntfs3g(image, tmp_path / "mnt") as mnt:
        (mnt / "d").mkdir()
        for name, data in {**big, **small}.items():
            (mnt / name).write_bytes(data)
    with Ntfs3g(image, tmp_path / "mnt") as mnt:
        for name in ("big1", "big3", "big4"):
            (mnt / name).unlink()
    alloc = scan(image)
    assert alloc.free_bytes == ntfsinfo_free_clusters(image) * CLUSTER
    deleted = {hashlib.sha256(big[n][i : i + CLUSTER]).digest() for n in ("big1", "big3", "big4")
               for i in range(0, 8 * MiB, CLUSTER)}
    raw = image.read_bytes()
    where = [off for off in range(0, len(raw), CLUSTER) if hashlib.sha256(raw[off : off + CLUSTER]).digest() in deleted]
    assert len(where) >= 0.9 * len(deleted)
    free_set = alloc.free
    inside = sum(any(lo <= off and off + CLUSTER <= hi for lo, hi in free_set) for off in where)
    assert inside >= 0.9 * len(deleted)
    live = {f"/{n}": d for n, d in big.items() if n not in ("big1", "big3", "big4")}
    live.update({f"/{n}": d for n, d in list(small.items())[::7]})
    assert_survives(image, alloc, live, tmp_path)


@pytest.mark.skipif(not shutil.which("ntfs-3g") or not os.path.exists("/dev/fuse"), reason="needs ntfs-3g FUSE")
def test_fragmented_mft_with_attribute_list(tmp_path: Path) -> None:
    """A full volume with every other 1 MiB file deleted, then 8000 tiny files: the MFT grows in
    hundreds of pieces, its runs move to extension records through an attribute list, and the root
    index spans many INDX blocks; pagefile.sys among them is still found."""
    image = mkntfs(tmp_path / "v.img", 32 * MiB)
    page = os.urandom(2 * MiB)
    with Ntfs3g(image, tmp_path / "mnt") as mnt:
        (mnt / "pagefile.sys").write_bytes(page)
        fillers = []
        try:
            while True:
                (mnt / f"f{len(fillers)}").write_bytes(os.urandom(MiB))
                fillers.append(f"f{len(fillers)}")
        except OSError:
            pass
        for name in fillers[::2]:
            (mnt / name).unlink()
        for i in range(8000):
            (mnt / f"s{i}").write_bytes(b"x%d" % i)
    read, size = reader(image)
    alloc = free_space(read, size, keep_pagefile=True)
    assert alloc.free_bytes == ntfsinfo_free_clusters(image) * CLUSTER
    out = run("ntfsinfo", "-i", "0", image).stdout.decode()
    assert "$ATTRIBUTE_LIST" in out  # the case this test is for
    alloc = scan(image)
    assert alloc.excluded == [("pagefile.sys", len(page))]
    files = {f"/s{i}": b"x%d" % i for i in range(0, 8000, 997)}
    assert_survives(image, alloc, files, tmp_path)


def test_pagefile_counts_as_free_unless_kept(tmp_path: Path) -> None:
    image = mkntfs(tmp_path / "v.img", 128 * MiB)
    page = os.urandom(32 * MiB)
    files = {"/keep.bin": os.urandom(3 * MiB), "/note.txt": b"hello"}
    put(image, "pagefile.sys", page, tmp_path)
    for name, data in files.items():
        put(image, name.lstrip("/"), data, tmp_path)
    kept = scan(image, keep_pagefile=True)
    assert kept.excluded == []
    assert kept.free_bytes == ntfsinfo_free_clusters(image) * CLUSTER
    alloc = scan(image)
    assert alloc.excluded == [("pagefile.sys", 32 * MiB)]
    assert alloc.free_bytes - kept.free_bytes >= 0.9 * len(page)

    def covered(a: Allocation) -> int:
        raw = image.read_bytes()
        chunks = {raw[o : o + CLUSTER]: o for o in range(0, len(raw), CLUSTER)}
        offs = [chunks.get(page[i : i + CLUSTER]) for i in range(0, len(page), CLUSTER)]
        return sum(o is not None and any(lo <= o < hi for lo, hi in a.free) for o in offs) * CLUSTER

    assert covered(alloc) >= 0.9 * len(page)
    assert covered(kept) == 0
    assert_survives(image, alloc, files, tmp_path)
    zeroed = tmp_path / "zeroed.img"
    filled_copy(image, alloc.free, 0, zeroed)
    listing = run("ntfsls", "-l", zeroed).stdout.decode()
    assert re.search(rf"\b{len(page)}\b.*pagefile\.sys", listing), listing
    assert run("ntfscat", zeroed, "/pagefile.sys").stdout == bytes(len(page))


def test_hibernated_volume_is_read_whole(tmp_path: Path) -> None:
    for header, size in ((b"HIBR", 64), (b"hibr", 300_000), (b"WAKE", 5000)):
        image = mkntfs(tmp_path / "v.img", 32 * MiB)
        put(image, "hiberfil.sys", header + os.urandom(size), tmp_path)
        with pytest.raises(ReadWhole, match="hibernated"):
            scan(image)
        image.unlink()
    image = mkntfs(tmp_path / "v.img", 32 * MiB)
    put(image, "hiberfil.sys", bytes(300_000), tmp_path)  # a hiberfil.sys after a full shutdown
    alloc = scan(image)
    assert alloc.excluded == [("hiberfil.sys", 300_000 // CLUSTER * CLUSTER + CLUSTER)]
    assert scan(image, keep_pagefile=True).free_bytes == ntfsinfo_free_clusters(image) * CLUSTER


def test_dirty_volume_is_read_whole(tmp_path: Path) -> None:
    image = mkntfs(tmp_path / "v.img", 64 * MiB)
    run("ntfsresize", "-f", "-f", "-s", "48M", image)  # it schedules chkdsk: sets VOLUME_IS_DIRTY
    with pytest.raises(ReadWhole, match=r"volume is marked dirty \(run chkdsk\)"):
        scan(image)


def restart_page(lsn: int, in_use: int, flags: int) -> bytes:
    """A $LogFile restart page as Windows writes it (4 KiB, update sequence over 8 sectors): the
    state ntfs-3g's tools cannot produce, since they empty the log."""
    page = bytearray(4096)
    page[0:0x1E] = b"RSTR" + struct.pack("<HHQIIHhh", 0x1E, 9, 0, 4096, 4096, 0x30, 1, 1)
    page[0x30:0x40] = struct.pack("<QHHHH", lsn, 1, 0xFFFF, in_use, flags)
    page[0x1E:0x20] = b"\x07\x00"  # the update sequence number; the saved sector ends are zeros
    for end in range(512, 4097, 512):
        page[end - 2 : end] = b"\x07\x00"
    return bytes(page)


def test_unclean_logfile_is_read_whole(tmp_path: Path) -> None:
    image = mkntfs(tmp_path / "v.img", 32 * MiB)
    put(image, "file", os.urandom(100_000), tmp_path)
    runlist = run("ntfsinfo", "-v", "-i", "2", image).stdout.decode()
    lcn = int(re.search(r"0x0\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+", runlist).group(1), 16)
    clean = scan(image)  # mkntfs leaves the log empty (all 0xFF): clean
    cases = [  # (first page, second page, refused)
        (restart_page(10, 0, 0), restart_page(5, 0, 2), True),  # the newer one has a client, not clean
        (restart_page(10, 0, 2), restart_page(11, 0, 0), True),
        (restart_page(10, 0, 2), restart_page(5, 0, 0), False),  # the newer one is clean
        (restart_page(10, 0xFFFF, 0), b"\xff" * 4096, False),  # no client in use
        (b"CHKD" + restart_page(10, 0, 2)[4:], b"\xff" * 4096, True),
        (bytes(4096), b"\xff" * 4096, True),  # not a log this reader knows
    ]
    for first, second, refused in cases:
        copy = tmp_path / "c.img"
        shutil.copyfile(image, copy)
        with open(copy, "r+b") as f:
            f.seek(lcn * CLUSTER)
            f.write(first + second)
        if refused:
            with pytest.raises(ReadWhole, match="LogFile"):
                scan(copy)
        else:
            assert scan(copy).free == clean.free


def test_not_ntfs_and_truncated(tmp_path: Path) -> None:
    with pytest.raises(ReadWhole):
        free_space(lambda off, n: bytes(n), 1 * MiB)
    image = mkntfs(tmp_path / "v.img", 16 * MiB)
    raw = image.read_bytes()
    for cut in (0, 511, 512, 4096, 20_000):  # the boot sector or the first MFT records cut off
        with pytest.raises(ReadWhole):
            free_space(lambda off, n, c=cut: raw[off : min(off + n, c)], len(raw))
    for cut in range(0, len(raw), 397 * 1024):  # a cut anywhere: refused, or an answer within the size
        try:
            assert_valid(free_space(lambda off, n, c=cut: raw[off : min(off + n, c)], len(raw)), len(raw))
        except ReadWhole:
            pass
    with pytest.raises(ReadWhole, match="larger than its partition"):
        free_space(lambda off, n: raw[off : off + n], len(raw) - 8192)


@pytest.fixture(scope="module")
def small_volume(tmp_path_factory) -> bytes:
    tmp = tmp_path_factory.mktemp("ntfs")
    image = mkntfs(tmp / "v.img", 16 * MiB)
    for i in range(5):
        put(image, f"f{i}", os.urandom(i * 40_000), tmp)
    put(image, "pagefile.sys", os.urandom(1 * MiB), tmp)
    return image.read_bytes()


def _metadata_spots(raw: bytes) -> list[int]:
    """Byte ranges the reader parses: the boot sector, the first MFT records and the bitmap."""
    mft = int.from_bytes(raw[0x30:0x38], "little") * CLUSTER
    return [0, mft, mft + 1024 * 3, mft + 1024 * 5, mft + 1024 * 6, mft + 1024 * 64]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_metadata_is_read_whole_or_valid(small_volume: bytes, data) -> None:
    raw = bytearray(small_volume)
    spots = _metadata_spots(small_volume)
    for _ in range(data.draw(st.integers(1, 6))):
        base = data.draw(st.sampled_from(spots))
        off = base + data.draw(st.integers(0, 1023))
        raw[off] ^= data.draw(st.integers(1, 255))
    try:
        alloc = free_space(lambda o, n: bytes(raw[o : o + n]), len(raw))
    except ReadWhole as exc:
        assert str(exc)
        return
    assert_valid(alloc, len(raw))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                             st.tuples(st.integers(0, 3 * MiB), st.integers(0, 2**32)), min_size=1, max_size=5))
def test_generated_trees_survive_zeroing(tmp_path: Path, files: dict[str, tuple[int, int]]) -> None:
    work = tmp_path / hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:12]
    work.mkdir()
    image = mkntfs(work / "v.img", 32 * MiB)
    contents = {}
    for name, (size, seed) in files.items():
        contents[f"/{name}"] = hashlib.shake_256(seed.to_bytes(8, "little")).digest(size) if size else b""
        put(image, name, contents[f"/{name}"], work)
    alloc = scan(image)
    assert alloc.free_bytes == ntfsinfo_free_clusters(image) * CLUSTER
    assert_survives(image, alloc, contents, work)
    shutil.rmtree(work)
