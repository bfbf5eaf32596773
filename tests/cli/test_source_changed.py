"""An image file written in place during its backup (same size, same inode) is not a clean success:
the snapshot is kept, but flagged, listed as such, and the exit status says so."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import AGENT

SOURCE_CHANGED = 4  # docs/errors.md


def _rewrite_once_open(pid: int, image: Path, done: threading.Event) -> None:
    """Wait until the agent has the image open (/proc/PID/fd), then overwrite 1 MiB in the middle."""
    fds = Path(f"/proc/{pid}/fd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if any(os.readlink(fd) == str(image) for fd in fds.iterdir()):
                break
        except OSError:  # a descriptor closed while we looked, or the process is gone
            pass
        time.sleep(0.01)
    else:
        return
    with open(image, "r+b") as f:
        f.seek(4 << 20)
        f.write(os.urandom(1 << 20))
    done.set()


def test_an_image_written_in_place_during_the_backup_is_flagged_and_exits_4(cli, tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(12 << 20))
    cli("init", "--pack-size", "1")
    # the upload limit keeps the run going for seconds after the source is opened
    proc = subprocess.Popen([*AGENT, "backup", str(image), "--limit-upload", "2MiB/s", "--json"], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    written = threading.Event()
    writer = threading.Thread(target=_rewrite_once_open, args=(proc.pid, image, written))
    writer.start()
    out, err = proc.communicate(timeout=120)
    writer.join()
    assert written.is_set(), "the backup ended before the image was rewritten"
    assert proc.returncode == SOURCE_CHANGED, err
    assert "changed while it was read" in err and "Traceback" not in err
    import json

    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["snapshot_id"] and summary["changed_during_backup"] is True

    listed = cli("snapshots", "--json").json()["snapshots"]
    assert [s["changed_during_backup"] for s in listed] == [True]
    assert "changed during backup" in cli("snapshots").out

    again = cli("backup", str(image), "--json")  # nothing writes now: a clean success
    assert again.code == 0 and again.json()["changed_during_backup"] is False
    listed = cli("snapshots", "--json").json()["snapshots"]
    assert sorted(s["changed_during_backup"] for s in listed) == [False, True]
