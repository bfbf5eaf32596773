"""`agent mount` as root with real FUSE: the disk image, a partition image that e2fsck accepts, and a
file under files/ are what was backed up; SIGTERM unmounts and leaves no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.diskimage import MissingTool, build_sample_image

MARKER = b"mounted snapshot marker"


def _needs_fuse() -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        pytest.skip("needs root, /dev/fuse and fusermount3 (fuse3)")


def _wait(cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _mount_processes(mnt: Path) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "mount" in cmd and str(mnt) in cmd:
            out.append(f"{pid}: {cmd}")
    return out


@pytest.fixture
def backed_up(cli, tmp_path):
    _needs_fuse()
    try:
        info = build_sample_image(tmp_path / "disk.img", marker=MARKER)
    except MissingTool as exc:
        pytest.skip(str(exc))
    cli("init")
    snap = cli("backup", str(tmp_path / "disk.img"), "--json").json()["snapshot_id"]
    return info, snap


def test_mount_in_the_foreground_then_sigterm(cli, tmp_path, backed_up):
    info, snap = backed_up
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = cli.popen("mount", str(mnt), "--foreground")
    try:
        _wait(lambda: os.path.ismount(mnt) or proc.poll() is not None, "the mount")
        assert os.path.ismount(mnt), proc.communicate()
        (host,) = os.listdir(mnt)
        (source,) = os.listdir(mnt / host)
        latest = mnt / host / source / "latest"
        assert subprocess.run(["cmp", str(latest / "disk.img"), str(info.path)]).returncode == 0
        root = info.partitions[1]
        assert (latest / "part2.img").stat().st_size == root.size
        fsck = subprocess.run(["e2fsck", "-fn", str(latest / "part2.img")], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        marker = latest / "files" / "part2" / info.marker_path.lstrip("/")
        assert MARKER in marker.read_bytes()
        assert sorted(os.listdir(latest / "files")) == ["part1", "part2"]
        with pytest.raises(OSError):
            (latest / "disk.img").open("r+b")  # read-only
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not os.path.ismount(mnt)
    assert _mount_processes(mnt) == []


def test_mount_one_snapshot_in_the_background_and_unmount(cli, tmp_path, backed_up):
    info, snap = backed_up
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = cli("mount", str(mnt), snap[:8])
    assert "mounted on" in res.out and os.path.ismount(mnt)
    try:
        assert sorted(os.listdir(mnt)) == ["disk.img", "files", "part1.img", "part2.img"]
        assert (mnt / "part1.img").read_bytes() == info.path.read_bytes()[info.partitions[0].start:
                                                                          info.partitions[0].start
                                                                          + info.partitions[0].size]
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
    _wait(lambda: _mount_processes(mnt) == [], "the mount process to exit", 30)
    again = cli("mount", str(tmp_path / "nope"), check=False)
    assert again.code == 16 and "does not exist" in again.err


def _listed_mount(mnt: Path) -> bool:
    return any(line.split()[4] == str(mnt) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def test_mount_as_an_unprivileged_user_with_access_to_dev_fuse(cli, tmp_path, backed_up):
    """fusermount3 (setuid) mounts for a user who can read the repository; SIGTERM unmounts. Root
    cannot look into another user's FUSE mount (no allow_other): the checks run as that user, and
    the mount table tells whether it is mounted."""
    import hashlib
    import sys
    import tempfile

    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not installed")
    info, _ = backed_up
    shared = Path(tempfile.mkdtemp(prefix="agent-unpriv-mount-"))
    proc = None
    try:
        shared.chmod(0o755)
        shutil.copytree(cli.repo, shared / "repo")
        shutil.copy(cli.passfile, shared / "pw")
        mnt = shared / "mnt"
        mnt.mkdir()
        subprocess.run(["chmod", "-R", "a+rX", str(shared / "repo")], check=True)
        subprocess.run(["chown", "65534:65534", str(mnt), str(shared / "pw")], check=True)
        env = {**cli.env, "AGENT_REPO": str(shared / "repo"), "AGENT_PASSPHRASE_FILE": str(shared / "pw"),
               "AGENT_CACHE_DIR": "off", "HOME": str(mnt)}
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                                 "agent", "mount", str(mnt), "--foreground"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        _wait(lambda: _listed_mount(mnt) or proc.poll() is not None, "the mount")
        assert _listed_mount(mnt), proc.communicate()
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        def as_user(*cmd: str) -> subprocess.CompletedProcess:
            return subprocess.run([*user, *cmd], capture_output=True)

        (host,) = as_user("ls", str(mnt)).stdout.decode().split()
        (source,) = as_user("ls", str(mnt / host)).stdout.decode().split()
        latest = mnt / host / source / "latest"
        digest = as_user("sha256sum", str(latest / "disk.img"))
        assert digest.returncode == 0, digest.stderr
        assert digest.stdout.split()[0].decode() == hashlib.sha256(info.path.read_bytes()).hexdigest()
        marker = as_user("cat", str(latest / "files" / "part2" / info.marker_path.lstrip("/"))).stdout
        assert MARKER in marker
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert not _listed_mount(mnt)
        assert _mount_processes(mnt) == []
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-l", str(shared / "mnt")], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)


def test_a_mount_holds_a_shared_lock_so_prune_waits(cli, tmp_path, backed_up):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = cli.popen("mount", str(mnt), "--foreground")
    try:
        _wait(lambda: os.path.ismount(mnt) or proc.poll() is not None, "the mount")
        assert os.path.ismount(mnt), proc.communicate()
        res = cli("prune", "--lock-wait", "0", check=False)
        assert res.code == 13 and "mount" in res.err, res.err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert cli("prune", "--lock-wait", "0").code == 0
