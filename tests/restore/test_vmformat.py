"""Restore into VM image formats with qemu-img: each of qcow2, VHDX and VMDK holds exactly the raw
restore (`qemu-img compare`), passes `qemu-img check`, is sparse, and no helper file is left behind,
also when the restore fails."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import Cli
from tests.diskimage import MissingTool, build_sample_image

MIB = 1 << 20


def qemu_img(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    if not shutil.which("qemu-img") or not shutil.which("sgdisk"):
        pytest.skip("needs qemu-img (qemu-utils) and sgdisk (gdisk)")
    tmp = tmp_path_factory.mktemp("vm")
    try:
        info = build_sample_image(tmp / "disk.img", size_mib=64, marker=b"vm marker")
    except MissingTool as exc:
        pytest.skip(str(exc))
    cli = Cli(tmp)
    cli("init")
    cli("backup", str(info.path))
    raw = tmp / "raw.img"
    cli("restore", "latest", "--to", str(raw))
    return cli, raw


@pytest.mark.parametrize("name, fmt", [("vm.qcow2", "qcow2"), ("vm.vhdx", "vhdx"), ("vm.VMDK", "vmdk"),
                                       ("vm.img", "qcow2")])
def test_each_format_holds_the_raw_restore(backed_up, tmp_path, name, fmt):
    cli, raw = backed_up
    out = tmp_path / name
    args = ["--format", fmt] if name == "vm.img" else []
    res = cli("restore", "latest", "--to", str(out), *args, "--json").json()
    assert res["format"] == fmt
    info = json.loads(qemu_img("info", "--output=json", out).stdout)
    assert info["format"] == fmt and info["virtual-size"] == 64 * MIB
    cmp = qemu_img("compare", "-f", "raw", "-F", fmt, raw, out)
    assert cmp.returncode == 0 and "Images are identical" in cmp.stdout, cmp
    check = qemu_img("check", "-f", fmt, out)
    assert check.returncode == 0, check
    assert out.stat().st_blocks * 512 < 40 * MIB  # sparse: about the data, not the 64 MiB disk
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no raw or partial file left
    assert out.stat().st_mode & 0o777 == 0o600 and res["target"] == str(out)  # private, as a raw restore is


def test_a_larger_vm_disk_with_a_moved_gpt(backed_up, tmp_path):
    cli, raw = backed_up
    out = tmp_path / "big.qcow2"
    cli("restore", "latest", "--to", str(out), "--size", "128MiB")
    back = tmp_path / "back.img"
    assert qemu_img("convert", "-O", "raw", out, back).returncode == 0
    assert back.stat().st_size == 128 * MIB
    verify = subprocess.run(["sgdisk", "-v", str(back)], capture_output=True, text=True)
    assert "No problems found" in verify.stdout, verify.stdout
    assert qemu_img("check", out).returncode == 0


def test_refusals_and_failures_leave_no_image(backed_up, tmp_path):
    cli, _ = backed_up
    out = tmp_path / "vm.qcow2"
    out.write_bytes(b"an older VM disk")
    res = cli("restore", "latest", "--to", str(out), check=False)
    assert res.code == 16 and "already exists" in res.err
    assert out.read_bytes() == b"an older VM disk"
    res = cli("restore", "latest", "--to", str(tmp_path / "x.qcow2"), "--format", "vdi", check=False)
    assert res.code == 2 and "unknown image format" in res.err
    # a repository whose packs are damaged: the restore fails once the raw file is begun
    (tmp_path / "broken").mkdir()
    broken = Cli(tmp_path / "broken")
    shutil.copytree(cli.repo, broken.repo)
    for pack in (broken.repo / "data").rglob("*"):
        if pack.is_file() and pack.stat().st_size > 256 << 10:  # data packs; the chunk lists' stay readable
            with open(pack, "r+b") as f:
                f.seek(pack.stat().st_size // 2)
                f.write(b"\0" * 64)
    res = broken("restore", "latest", "--to", str(out), "--force", check=False)
    assert res.code == 14 and "Traceback" not in res.err, res.err
    assert out.read_bytes() == b"an older VM disk"  # the old image is only ever replaced by a complete one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "vm.qcow2"]
