"""A partition of a snapshot as a file a checker can open, without writing the disk image out.

First choice: the snapshot's tree (`agent.browse.mount`: disk.img, partN.img) mounted read-only
with FUSE on a private temporary directory, served by a thread of this process; a checker then
reads only what it looks at (metadata, mostly), fetched on demand. It is always unmounted, so no
mount and no process outlives the verify. Where FUSE cannot mount (no /dev/fuse, no libfuse, a
container), the partition is restored into a sparse temporary file in the cache directory
instead, and removed after its check.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import AgentError, Interrupted
from agent.repo.index import ChunkIndex
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot

_MOUNT_WAIT_S = 30.0


class FuseUnavailable(AgentError):
    """The private FUSE mount could not be made; the caller falls back to a temporary file."""


@contextmanager
def fuse_tree(repo: Repository, index: ChunkIndex, snap: Snapshot) -> Iterator[Path]:
    """The snapshot's tree mounted on a private temporary directory, for the duration of the block."""
    try:
        from agent.browse.mount import SnapshotTree, serve
    except (ImportError, OSError) as exc:  # mfusepy raises OSError when libfuse is missing
        raise FuseUnavailable(f"FUSE is not available ({exc})") from None
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable("FUSE is not available (no /dev/fuse)")
    mnt = Path(tempfile.mkdtemp(prefix="agent-verify-"))  # mode 0700: private to this user
    tree = SnapshotTree(repo, index, [snap], single=True)
    failed: list[BaseException] = []

    def loop() -> None:
        try:
            serve(tree, str(mnt))
        except BaseException as exc:  # noqa: BLE001 - reported as the reason for the fallback
            failed.append(exc)

    thread = threading.Thread(target=loop, name="verify-fuse", daemon=True)
    with _sigterm_raises():
        thread.start()
        try:
            deadline = time.monotonic() + _MOUNT_WAIT_S
            while not os.path.ismount(mnt):
                if not thread.is_alive() or time.monotonic() > deadline:
                    why = f"{failed[0].__class__.__name__}: {failed[0]}" if failed else "not mounted in time"
                    raise FuseUnavailable(f"FUSE could not mount ({why})")
                time.sleep(0.05)
            yield mnt
        finally:
            _unmount(mnt)
            thread.join(_MOUNT_WAIT_S)
            try:
                mnt.rmdir()
            except OSError:
                pass  # still mounted after all: leave the empty directory rather than fail


def _unmount(mnt: Path) -> None:
    """fusermount3 -u (root can also umount); lazily when something still holds it open."""
    if not os.path.ismount(mnt):
        return
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    for lazy in (False, True):
        argv = ([tool, "-u", *(["-z"] if lazy else []), str(mnt)] if tool
                else ["umount", *(["-l"] if lazy else []), str(mnt)])
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if not os.path.ismount(mnt):
            return


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While mounted, SIGTERM ends the verify through the finally blocks (so the mount goes too).
    Without a handler of ours, libfuse would take SIGTERM over to end only its own loop."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # `agent run` has its own handler, which libfuse leaves alone
        return

    def handler(signum, frame) -> None:
        raise Interrupted("stopped by SIGTERM; the verify did not finish")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def temporary_partition(repo: Repository, snap: Snapshot, start: int, size: int, scratch: Path,
                        name: str) -> Iterator[Path]:
    """Image bytes [start, start + size) restored into a sparse file under `scratch`, removed after."""
    from agent.restore.options import RestoreOptions
    from agent.restore.run import run_restore

    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=scratch, prefix=f"verify-{snap.id[:8]}-{name}-", suffix=".img")
    os.close(fd)
    try:
        # damaged chunks become zeros: the checker then says what that does to the filesystem
        run_restore(repo, snap, tmp, RestoreOptions(force=True, ignore_errors=True, window=(start, size)))
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)
