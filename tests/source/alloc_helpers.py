"""What every free-space reader's tests share: reading an image file, checking an answer's shape,
and the zeroing test (overwrite every reported free byte, then the filesystem's own tools must
find it clean with every file intact)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.source.allocation.model import Allocation, Read, ReadWhole

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
MIB = 1 << 20


def have(*tools: str) -> bool:
    return all(shutil.which(t, path=SBIN_PATH) for t in tools)


def run(*args: str | os.PathLike, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=SBIN_PATH, LC_ALL="C", MTOOLS_SKIP_CHECK="1")
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, env=env, input=stdin)


def blank(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def file_read(data: bytes) -> Read:
    """read(offset, length) over bytes, short only at the end, like a partition."""
    def read(offset: int, length: int) -> bytes:
        return data[offset:offset + length] if offset >= 0 else b""
    return read


def answer(reader: Callable[[Read, int], Allocation], image: Path) -> Allocation:
    """The reader's answer for an image file, read through seek/read like a partition."""
    size = image.stat().st_size
    with open(image, "rb") as f:
        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)
        got = reader(read, size)
    assert_valid(got, size)
    return got


def assert_valid(got: Allocation, size: int) -> None:
    """Sorted, disjoint, merged, non-empty ranges inside the partition."""
    last = -1
    for start, end in got.free:
        assert 0 <= start < end <= size, (start, end, size)
        assert start > last, "ranges overlap, touch or are unsorted"
        last = end


def damaged(base: bytes, flips: list[tuple[int, int]], cut: int | None) -> tuple[Read, int]:
    """read() and size of `base` with bytes XORed at `flips` (offset, mask; 0 counts as 1) and cut
    at `cut`, without copying a whole image for every example."""
    size = len(base) if cut is None else min(cut, len(base))
    patches: dict[int, int] = {}
    for offset, mask in flips:
        patches[offset] = patches.get(offset, 0) ^ (mask or 1)

    def read(offset: int, length: int) -> bytes:
        if offset < 0:
            return b""
        out = bytearray(base[offset:min(offset + length, size)])
        for at, mask in patches.items():
            if offset <= at < offset + len(out):
                out[at - offset] ^= mask
        return bytes(out)
    return read, size


def answer_or_read_whole(reader: Callable[[Read, int], Allocation], read: Read, size: int) -> None:
    """The property every reader keeps on damaged input: a valid answer or ReadWhole, nothing else."""
    try:
        got = reader(read, size)
    except ReadWhole as exc:
        assert str(exc)
        return
    assert_valid(got, size)


def filled_copy(image: Path, free: list[tuple[int, int]], byte: int, out: Path) -> Path:
    """A copy of `image` with every free range overwritten by `byte`."""
    shutil.copyfile(image, out)
    with open(out, "r+b") as f:
        for start, end in free:
            f.seek(start)
            while start < end:
                n = min(end - start, 4 * MIB)
                f.write(bytes([byte]) * n)
                start += n
    return out


@contextlib.contextmanager
def loop_device(image: Path) -> Iterator[str]:
    dev = run("losetup", "-f", "--show", image).stdout.decode().strip()
    try:
        yield dev
    finally:
        run("losetup", "-d", dev, check=False)


@contextlib.contextmanager
def mounted(cmd: list[str], mnt: Path) -> Iterator[Path]:
    mnt.mkdir(exist_ok=True)
    run(*cmd, mnt)
    try:
        yield mnt
    finally:
        os.sync()
        run("umount", mnt)


def random_files(n: int, size: int, seed: int) -> dict[str, bytes]:
    rnd = random.Random(seed)
    return {f"f{i}.bin": rnd.randbytes(size) for i in range(n)}
