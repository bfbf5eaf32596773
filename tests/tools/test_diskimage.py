"""The sample-image builder makes images real tools accept, and change_image edits them the
way a user would, so end-to-end backup tests start from something believable."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import diskimage
from tests.diskimage import (
    MIB,
    MissingTool,
    build_sample_image,
    change_image,
    extract_partition,
    inspect_image,
    require_tools,
)

MARKER = b"the-quick-marker-7f3a9c"

try:
    require_tools()
    require_tools("fsck.vfat", "e2fsck")
except MissingTool as exc:  # pragma: no cover - depends on the machine
    pytest.skip(str(exc), allow_module_level=True)


def tool(*args: str | os.PathLike, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PATH=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]),
        MTOOLS_SKIP_CHECK="1",
        LC_ALL="C",
    )
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env=env,
        check=check,
    )


def assert_filesystems_valid(info: diskimage.ImageInfo, tmp: Path) -> None:
    fat = extract_partition(info.path, info.esp, tmp / "esp.fat")
    ext = extract_partition(info.path, info.root, tmp / "root.ext4")
    assert fat.stat().st_size == info.esp.size and ext.stat().st_size == info.root.size
    r = tool("fsck.vfat", "-n", fat, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    r = tool("e2fsck", "-fn", ext, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def partition_bytes(info: diskimage.ImageInfo, part: diskimage.PartInfo) -> bytes:
    with open(info.path, "rb") as f:
        return os.pread(f.fileno(), part.size, part.start)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> diskimage.ImageInfo:
    return build_sample_image(tmp_path_factory.mktemp("img") / "disk.img", marker=MARKER)


def test_layout(image):
    assert image.size == 64 * MIB and image.path.stat().st_size == 64 * MIB
    assert (image.esp.start, image.esp.size) == (1 * MIB, 16 * MIB)
    assert image.root.start == 17 * MIB
    assert image.unallocated_start < image.size - MIB  # free tail for resize tests
    assert image.marker_path


def test_gpt_is_valid(image):
    out = tool("sgdisk", "-v", image.path).stdout
    assert "No problems found" in out, out
    info = tool("sgdisk", "-i", "1", image.path).stdout
    assert "EFI system partition" in info


def test_filesystems_are_valid(image, tmp_path):
    assert_filesystems_valid(image, tmp_path)


def test_marker_is_in_the_image_and_the_image_is_sparse(image):
    data = image.path.read_bytes()
    assert MARKER in data
    at = data.index(MARKER)
    assert image.root.start <= at < image.root.start + image.root.size
    assert data[image.unallocated_start : image.size - 64 * 512] == bytes(
        image.size - 64 * 512 - image.unallocated_start
    )
    allocated = image.path.stat().st_blocks * 512
    assert allocated < image.size // 2, f"{allocated} bytes allocated of {image.size}"


def test_contents_are_readable_with_the_tools(image):
    listing = tool("mdir", "-b", "-i", f"{image.path}@@{image.esp.start}", "::/EFI/BOOT").stdout
    assert "BOOTX64.EFI" in listing.upper()
    dev = f"{image.path}?offset={image.root.start}"
    assert "main.py" in tool("debugfs", "-R", "ls /home/user/projects/agent/src", dev).stdout
    marker = tool("debugfs", "-R", f"cat {image.marker_path}", dev).stdout
    assert MARKER.decode() in marker


def test_same_seed_same_data(tmp_path):
    a = build_sample_image(tmp_path / "a.img", size_mib=32, esp_mib=4, seed=5)
    b = build_sample_image(tmp_path / "b.img", size_mib=32, esp_mib=4, seed=5)
    def dev(i):
        return f"{i.path}?offset={i.root.start}"

    blob_a = tool("debugfs", "-R", "cat /data/blob.bin", dev(a)).stdout
    blob_b = tool("debugfs", "-R", "cat /data/blob.bin", dev(b)).stdout
    assert blob_a == blob_b and len(blob_a) > MIB
    assert (
        tool("sgdisk", "-p", a.path).stdout.splitlines()[2]
        == tool("sgdisk", "-p", b.path).stdout.splitlines()[2]
    )


def test_change_image_changes_both_partitions(tmp_path):
    info = build_sample_image(tmp_path / "disk.img", marker=MARKER)
    before = {p.number: partition_bytes(info, p) for p in info.partitions}
    with open(info.path, "rb") as f:
        header_before = f.read(info.esp.start)
    changes = change_image(info.path, info, seed=3)
    assert (
        len(changes) == 4
        and any(c.startswith("p1") for c in changes)
        and any(c.startswith("p2") for c in changes)
    )
    after = {p.number: partition_bytes(info, p) for p in info.partitions}
    for n in before:
        assert before[n] != after[n], f"partition {n} unchanged"
        assert len(after[n]) == len(before[n])
    with open(info.path, "rb") as f:
        assert f.read(info.esp.start) == header_before  # the GPT itself is untouched
    assert MARKER in after[2]
    assert_filesystems_valid(info, tmp_path)
    esp = f"{info.path}@@{info.esp.start}"
    assert "edited, seed 3" in tool("mtype", "-i", esp, "::/EFI/BOOT/grub.cfg").stdout
    assert "NEW3.TXT" in tool("mdir", "-b", "-i", esp, "::/").stdout.upper()
    dev = f"{info.path}?offset={info.root.start}"
    assert "download-3.bin" in tool("debugfs", "-R", "ls -l /home/user", dev).stdout

    # The in-place edit touched a bounded region of the blob, not the whole file.
    changed = sum(
        1
        for i in range(0, len(before[2]), 4096)
        if before[2][i : i + 4096] != after[2][i : i + 4096]
    )
    assert changed < (2 * MIB) // 4096

    # A second night with the same seed still works (the new file is replaced).
    change_image(info.path, seed=3)
    assert_filesystems_valid(info, tmp_path)


def test_build_is_fast(tmp_path):
    t0 = time.monotonic()
    build_sample_image(tmp_path / "disk.img")
    assert time.monotonic() - t0 < 4.0  # ~1.1 s, of which sgdisk's own sync sleep is 1 s


def test_inspect_image_round_trips(image):
    found = inspect_image(image.path)
    assert found.partitions == image.partitions
    with pytest.raises(ValueError):
        inspect_image(Path(__file__))


def test_missing_tool_names_the_package(monkeypatch):
    real_which = diskimage.shutil.which
    monkeypatch.setattr(
        diskimage.shutil,
        "which",
        lambda name, path=None: None if name == "sgdisk" else real_which(name, path=path),
    )
    with pytest.raises(MissingTool, match=r"sgdisk.*apt-get install gdisk"):
        build_sample_image("/nonexistent/never-written.img")


def test_too_small_is_refused(tmp_path):
    with pytest.raises(ValueError):
        build_sample_image(tmp_path / "x.img", size_mib=8)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli.img"
    assert (
        diskimage.main(["build", str(out), "--size-mib", "48", "--marker", "cli-marker-xyz"]) == 0
    )
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "built" in line and "ext4" in line
    assert b"cli-marker-xyz" in out.read_bytes()
    assert diskimage.main(["change", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith(f"changed {out}")
    assert diskimage.main(["change", str(tmp_path / "missing.img")]) == 1
    assert "error:" in capsys.readouterr().err
