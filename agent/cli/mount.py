"""`agent mount`: browse every snapshot (or one) as a read-only FUSE filesystem."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Optional

import typer

from agent.cli.context import AppContext, app_context

_WAIT_S = 60.0  # for a background mount to appear (the key derivation and the index load come first)


def mount(
    ctx: typer.Context,
    mountpoint: str = typer.Argument(..., help="An empty directory to mount on."),
    snapshot: Optional[str] = typer.Argument(None, help="Only this snapshot (id prefix or 'latest') at the root; "
                                             "default: every snapshot, by host, source and time."),
    host: Optional[str] = typer.Option(None, "--host", help="Only the snapshots of this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Only the snapshots of this source path."),
    foreground: bool = typer.Option(False, "--foreground", "-f", help="Stay in the foreground until unmounted "
                                    "(Ctrl-C or `fusermount3 -u MOUNTPOINT`); default: return once mounted."),
    lock_wait: int = typer.Option(60, "--lock-wait", help="Seconds to wait for a running prune to finish. The "
                                  "mount holds a shared lock until unmounted, so prune waits for it."),
) -> None:
    """Mount snapshots read-only: disk.img, partN.img and the files of each partition (FUSE)."""
    from agent.errors import TargetError, UsageError

    app: AppContext = app_context(ctx, False)
    if not os.path.isdir(mountpoint):
        raise TargetError(f"{mountpoint}: the directory does not exist")
    if os.path.ismount(mountpoint):
        raise TargetError(f"{mountpoint} is already a mount point", hint=f"`fusermount3 -u {mountpoint}` first")
    if not foreground:
        from agent.config.settings import passphrase_from_settings

        if passphrase_from_settings(app.settings) is None:
            raise UsageError("a background mount cannot ask for the passphrase",
                             hint="give --passphrase-file (or AGENT_PASSPHRASE_FILE), or add --foreground")
        _background(mountpoint, _WAIT_S + max(lock_wait, 0))
        app.out.print(f"mounted on {mountpoint}; unmount with `fusermount3 -u {mountpoint}`")
        return
    # a shared lock for as long as it is mounted: a prune waits rather than delete packs being read
    with app.repository() as repo, repo.reader_lock(command="mount", wait=lock_wait, warn=app.warn):
        from agent.browse.mount import SnapshotTree, serve
        from agent.repo.snapshots import filter_snapshots, resolve

        snaps = filter_snapshots(repo.list_snapshots([]), host=host, source=source)
        if snapshot is not None:
            snaps = [resolve(snaps, snapshot, local_host=app.local_host)]
        elif not snaps:
            raise UsageError("no snapshot to mount" + (" for that host or source" if host or source else ""))
        index = repo.load_index([])
        app.info(f"mounting {len(snaps)} snapshot(s) on {mountpoint} (Ctrl-C unmounts)")
        serve(SnapshotTree(repo, index, snaps, single=snapshot is not None), mountpoint)


def _background(mountpoint: str, wait: float) -> None:
    """The same command in the foreground, in its own session, detached; return once it is mounted."""
    from agent.errors import TargetError

    args = [a for a in sys.argv[1:]] + ["--foreground"]
    child = subprocess.Popen([sys.executable, "-m", "agent", *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            if child.stderr is not None:
                child.stderr.close()
            return
        if child.poll() is not None:
            err = child.stderr.read().decode(errors="replace").strip() if child.stderr else ""
            raise TargetError(f"the mount failed: {err.splitlines()[-1] if err else f'exit {child.returncode}'}")
        time.sleep(0.1)
    child.terminate()
    raise TargetError(f"{mountpoint} was not mounted within {wait:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("mount")(mount)
