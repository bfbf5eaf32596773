"""The bare-metal runbook works: restore a GPT disk onto a larger disk, then run the runbook's own
GPT and resize blocks (read from docs/bare-metal.md, not copied here) and check the result.

A runbook that is wrong is found out in the middle of a disaster; this runs its steps against an
image file made larger afterwards (a VM disk) and against a larger loop device that held an older
partition table (a used disk). The blocks are the ```sh fences marked `<!-- runbook-test: NAME -->`;
only the DISK and PART assignments are replaced by the test's own devices.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.diskimage import MIB, MissingTool, build_sample_image, require_tools
from tests.docs.examples import DOCS

RUNBOOK = DOCS / "bare-metal.md"
MARKER = b"bare-metal marker: invoices 2024"
SECTOR = 512
TARGET_SIZE = 48 * MIB  # the source disk is 32 MiB

try:
    require_tools()
    require_tools("e2fsck")
    for tool in ("resize2fs", "dumpe2fs", "mdir"):
        if not shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])):
            raise MissingTool(f"missing tool {tool}; install with: apt-get install e2fsprogs mtools")
except MissingTool as exc:  # pragma: no cover - depends on the machine
    pytest.skip(str(exc), allow_module_level=True)


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]), LC_ALL="C",
                MTOOLS_SKIP_CHECK="1")


def sh(*args: str | os.PathLike, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def runbook_block(name: str) -> str:
    text = RUNBOOK.read_text(encoding="utf-8")
    m = re.search(r"<!--\s*runbook-test:\s*" + re.escape(name) + r"\s*-->\s*\n```sh\n(.*?)\n```", text, re.S)
    assert m, f"docs/bare-metal.md has no ```sh block marked <!-- runbook-test: {name} --> any more"
    return m[1]


def run_runbook_block(name: str, **variables: str) -> str:
    """Run a marked block with bash -eu; the page's own assignments of `variables` are dropped."""
    script = runbook_block(name)
    for var in variables:
        script = re.sub(rf"(?m)^{var}=\S*[^\n]*\n", "", script)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                          env={**_env(), **variables})
    assert proc.returncode == 0, f"runbook block {name!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class Part:
    number: int
    first: int
    last: int
    type_guid: str
    unique_guid: str
    name: str


def _bytes(part: Part) -> int:
    return (part.last - part.first + 1) * SECTOR


def partitions(disk: str | Path) -> dict[int, Part]:
    """Every partition as `sgdisk -p` lists it, with the details `sgdisk -i` gives."""
    out = sh("sgdisk", "-p", disk).stdout
    parts = {}
    for m in re.finditer(r"(?m)^\s*(\d+)\s+(\d+)\s+(\d+)\s", out.split("Number")[-1]):
        info = sh("sgdisk", "-i", m[1], disk).stdout
        parts[int(m[1])] = Part(int(m[1]), int(m[2]), int(m[3]),
                                re.search(r"Partition GUID code: (\S+)", info)[1],
                                re.search(r"Partition unique GUID: (\S+)", info)[1],
                                re.search(r"Partition name: '(.*)'", info)[1])
    return parts


def assert_gpt_clean(disk: str | Path) -> None:
    out = sh("sgdisk", "-v", disk).stdout
    assert "No problems found" in out and "Problem:" not in out, out


def assert_backup_gpt_misplaced(disk: str | Path) -> None:
    """The problem the runbook's `sgdisk -e` is for, as `sgdisk -v` words it."""
    out = " ".join(sh("sgdisk", "-v", disk).stdout.split())
    assert "doesn't reside at the end of the disk" in out, out


def assert_ext4_grown_and_intact(part: str | Path, part_bytes: int, old_bytes: int) -> None:
    fsck = sh("e2fsck", "-f", "-n", part, check=False)
    assert fsck.returncode == 0, f"e2fsck found problems after the resize:\n{fsck.stdout}{fsck.stderr}"
    header = sh("dumpe2fs", "-h", part).stdout
    blocks = int(re.search(r"Block count:\s+(\d+)", header)[1])
    block_size = int(re.search(r"Block size:\s+(\d+)", header)[1])
    fs_bytes = blocks * block_size
    assert old_bytes < fs_bytes <= part_bytes and part_bytes - fs_bytes < MIB, (
        f"the filesystem ({fs_bytes} bytes) does not fill the grown partition ({part_bytes} bytes)")
    cat = subprocess.run(["debugfs", "-R", "cat /home/user/marker.bin", str(part)], capture_output=True, env=_env())
    assert MARKER in cat.stdout, "a file in the restored filesystem lost its content"


@pytest.fixture(scope="module")
def repo_with_disk(tmp_path_factory):
    """One repository holding a backup of a 32 MiB GPT disk (EFI system partition + ext4), shared by the
    tests here (each restores to its own target)."""
    tmp = tmp_path_factory.mktemp("bare-metal")
    cli = Cli(tmp)
    src = tmp / "source.img"
    build_sample_image(src, size_mib=32, esp_mib=4, marker=MARKER)
    cli("init")
    cli("backup", str(src))
    return cli, src, partitions(src)


def restore_and_fix_gpt(cli, disk: str, source_parts: dict[int, Part]) -> None:
    """Restore onto a used, larger target, then the runbook's GPT step; the partitions must not move."""
    refused = cli("restore", "latest", "--to", disk, check=False)
    assert refused.code == 16 and "--force" in refused.err, refused.err  # the target held data
    cli("restore", "latest", "--to", disk, "--force")
    assert_gpt_clean(disk)  # the restore moved the backup GPT to the disk's end itself
    assert partitions(disk) == source_parts

    out = run_runbook_block("gpt", DISK=disk)  # still right (and harmless) after such a restore
    assert "No problems found" in out, out
    assert_gpt_clean(disk)
    assert partitions(disk) == source_parts


def grow_last_partition(disk: str, source_parts: dict[int, Part], disk_bytes: int) -> Part:
    last = max(source_parts)
    assert last == 2 and re.search(r"(?m)^N=2\b", runbook_block("grow-partition")), "runbook and image disagree"
    run_runbook_block("grow-partition", DISK=disk)
    assert_gpt_clean(disk)
    after = partitions(disk)
    old, new = source_parts[last], after[last]
    assert after[1] == source_parts[1]  # the EFI system partition is untouched
    assert (new.first, new.type_guid, new.unique_guid, new.name) == (old.first, old.type_guid, old.unique_guid,
                                                                     old.name)
    last_usable = disk_bytes // SECTOR - 34
    assert old.last < new.last <= last_usable and new.last > last_usable - 2048, (old, new, last_usable)
    return new


def assert_esp_intact(image_or_disk: str, esp: Part) -> None:
    listing = sh("mdir", "-i", f"{image_or_disk}@@{esp.first * SECTOR}", "::/EFI/BOOT").stdout
    assert "BOOTX64" in listing.upper(), listing


def test_runbook_on_a_larger_image_file(repo_with_disk, tmp_path):
    cli, src, source_parts = repo_with_disk
    target = tmp_path / "vm-disk.img"
    target.write_bytes(b"old vm disk" * 1000)
    refused = cli("restore", "latest", "--to", str(target), check=False)
    assert refused.code == 16 and "--force" in refused.err
    cli("restore", "latest", "--to", str(target), "--force")
    assert target.stat().st_size == src.stat().st_size
    assert sh("cmp", src, target).returncode == 0
    os.truncate(target, TARGET_SIZE)  # the VM gets a larger disk
    assert_backup_gpt_misplaced(target)

    out = run_runbook_block("gpt", DISK=str(target))
    assert "No problems found" in out, out
    assert_gpt_clean(target)
    assert partitions(target) == source_parts

    new = grow_last_partition(str(target), source_parts, TARGET_SIZE)
    part_bytes = _bytes(new)
    dev = _try_losetup("--offset", str(new.first * SECTOR), "--sizelimit", str(part_bytes), str(target))
    if dev:  # the partition in place, as a device of exactly its size
        try:
            run_runbook_block("grow-ext4", PART=dev)
            assert_ext4_grown_and_intact(dev, part_bytes, _bytes(source_parts[2]))
        finally:
            sh("losetup", "-d", dev, check=False)
    else:  # without loop devices: the same steps on a copy of the partition
        copy = tmp_path / "p2.img"
        sh("dd", f"if={target}", f"of={copy}", "bs=512", f"skip={new.first}", f"count={new.last - new.first + 1}",
           "conv=sparse", "status=none")
        run_runbook_block("grow-ext4", PART=str(copy))
        assert_ext4_grown_and_intact(copy, part_bytes, _bytes(source_parts[2]))
    assert_esp_intact(str(target), source_parts[1])


def _try_losetup(*args: str) -> str | None:
    """A new loop device (losetup --find --show ARGS), or None without root, losetup or a free device."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        return None
    res = subprocess.run(["losetup", "--find", "--show", *args], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def _partition_node(disk: str, number: int, tmp_path: Path, size_bytes: int) -> str:
    """/dev/loopNpK once the kernel shows it with the expected size; a private node if devtmpfs lags."""
    name = os.path.basename(disk)
    sysdir = Path(f"/sys/class/block/{name}p{number}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sysdir.exists() and int((sysdir / "size").read_text()) * SECTOR == size_bytes:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the kernel does not show {name}p{number} with {size_bytes} bytes after `partx -u`")
    node = f"{disk}p{number}"
    for _ in range(50):
        if os.path.exists(node):
            return node
        time.sleep(0.1)
    major, minor = (int(x) for x in (sysdir / "dev").read_text().split(":"))
    node = str(tmp_path / f"{name}p{number}")
    os.mknod(node, 0o600 | 0o060000, os.makedev(major, minor))
    return node


def test_runbook_on_a_larger_used_disk(repo_with_disk, tmp_path):
    cli, _, source_parts = repo_with_disk
    backing = tmp_path / "new-disk"
    with open(backing, "wb") as f:
        f.truncate(TARGET_SIZE)
    sh("sgdisk", "-o", "-n", "1:2048:0", "-c", "1:old data", backing)  # a used disk: its own, older GPT
    disk = _try_losetup("--partscan", str(backing))
    if disk is None:
        pytest.skip("needs root, losetup and a free loop device")
    try:
        restore_and_fix_gpt(cli, disk, source_parts)
        new = grow_last_partition(disk, source_parts, TARGET_SIZE)
        run_runbook_block("reread", DISK=disk)
        part_bytes = _bytes(new)
        part = _partition_node(disk, 2, tmp_path, part_bytes)
        run_runbook_block("grow-ext4", PART=part)
        assert_ext4_grown_and_intact(part, part_bytes, _bytes(source_parts[2]))
        assert_esp_intact(disk, source_parts[1])
    finally:
        subprocess.run(["losetup", "-d", disk], capture_output=True)
