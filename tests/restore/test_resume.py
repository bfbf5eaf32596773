"""An interrupted restore (kill -9) resumes when the same command runs again: it fetches only what was
not written yet (within the work in flight), and the result is byte-identical. Journals of another
snapshot, and targets that vanish, give one clear line.

The loop-device cases need root and losetup; they skip otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

MiB = 1 << 20
SIZE = 128 * MiB
PACK = 16 * MiB


@pytest.fixture
def image(cli, tmp_path) -> Path:
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(SIZE))  # incompressible, no zeros: fetched bytes track image bytes
    cli("init")
    cli("backup", str(img))
    return img


def _matching(target: str, image: Path, step: int = 64 << 10) -> int:
    """Bytes of the target that already equal the image, counted in 64 KiB blocks: what the killed run
    really wrote, measured independently of its journal."""
    want = image.read_bytes()
    with open(target, "rb") as f:
        have = f.read(len(want))
    return sum(step for i in range(0, len(want), step) if have[i:i + step] == want[i:i + step])


def _kill_at_half(cli, target: str, *extra: str) -> None:
    proc = cli.popen("restore", "latest", "--to", target, "--limit-download", "32MiB/s", *extra)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if not os.path.exists(target):
                continue
            with open(target, "rb") as f:  # the allocation does not say it for a disk: look at the bytes
                head = f.read(SIZE)
            if sum(1 for i in range(0, SIZE, MiB) if head[i:i + 16] != bytes(16)) >= SIZE // MiB // 2:
                break
        assert proc.poll() is None, "the restore finished before it could be interrupted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _resume_and_check(cli, target: str, image: Path) -> dict:
    before = _matching(target, image)
    assert SIZE // 5 <= before <= SIZE * 4 // 5, before
    out = cli("restore", "--json", "latest", "--to", target).json()  # the same command: no --force
    remaining = SIZE - before
    # the acceptance bound is the remaining bytes plus two 16 MiB packs; what is really lost is the
    # work in flight at the kill (three ranged reads of at most 4 MiB)
    assert out["fetched_bytes"] <= remaining + 2 * PACK, (out, remaining)
    assert out["fetched_bytes"] <= remaining + 13 * MiB, (out, remaining)
    assert out["resumed_bytes"] >= before - 13 * MiB
    with open(target, "rb") as f:
        assert f.read(SIZE) == image.read_bytes()
    return out


def test_kill_9_then_the_same_command_resumes_an_image_file(cli, tmp_path, image):
    target = str(tmp_path / "restored.img")
    journal = tmp_path / ".restored.img.agent-restore"
    _kill_at_half(cli, target)
    assert journal.exists() and journal.stat().st_mode & 0o777 == 0o600
    _resume_and_check(cli, target, image)
    assert not journal.exists()  # finished: nothing to resume


def test_kill_9_then_the_same_command_resumes_a_disk(cli, tmp_path, image):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for loop devices")
    backing = tmp_path / "disk"
    with open(backing, "wb") as f:
        f.truncate(SIZE + 8 * MiB)
    made = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no loop device available: {made.stderr.strip()}")
    dev = made.stdout.strip()
    try:
        _kill_at_half(cli, dev)
        journals = list((tmp_path / "cache").glob("*/restore-journals/*"))
        assert len(journals) == 1 and journals[0].stat().st_mode & 0o777 == 0o600
        _resume_and_check(cli, dev, image)
        assert not journals[0].exists()
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_a_journal_of_another_snapshot_is_one_line_and_force_starts_over(cli, tmp_path, image):
    target = str(tmp_path / "restored.img")
    _kill_at_half(cli, target)
    other = tmp_path / "other.img"
    other.write_bytes(os.urandom(4 * MiB))
    cli("backup", str(other))
    res = cli("restore", "latest", "--source", str(other), "--to", target, check=False)  # two sources now
    assert res.code == 16, res
    assert "interrupted restore of snapshot" in res.err and "--force" in res.err and "Traceback" not in res.err
    assert len(res.err.strip().splitlines()) <= 3  # the restoring line, the error, the hint
    cli("restore", "latest", "--source", str(other), "--to", target, "--force")
    assert Path(target).read_bytes() == other.read_bytes()
    assert not (tmp_path / ".restored.img.agent-restore").exists()


def test_a_target_whose_directory_is_removed_mid_restore_fails_in_one_line(cli, tmp_path, image):
    where = tmp_path / "out"
    where.mkdir()
    target = where / "restored.img"
    proc = cli.popen("restore", "latest", "--to", str(target), "--limit-download", "16MiB/s")
    deadline = time.monotonic() + 30
    while not (where / ".restored.img.agent-restore").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    shutil.rmtree(where)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 16, err
    assert b"disappeared during the restore" in err and b"Traceback" not in err
