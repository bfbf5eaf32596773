"""`agent check --lock-wait`: waits for an exclusive lock (a prune) to go away, like backup and prune;
without it, check fails at once with exit 13."""

from __future__ import annotations

import threading
import time

from agent.repo.repository import Repository
from backends.local import LocalBackend


def test_check_waits_for_an_exclusive_lock_only_when_asked(cli):
    cli("init")
    holder = Repository.open(LocalBackend(cli.repo), cli.passfile.read_bytes().strip())
    lock = holder.lock(exclusive=True, command="prune")
    try:
        t0 = time.monotonic()
        res = cli("check", check=False)
        assert res.code == 13 and "locked" in res.err, res
        assert time.monotonic() - t0 < 20

        release = threading.Timer(1.5, lock.release)
        release.start()
        t0 = time.monotonic()
        res = cli("check", "--lock-wait", "60", check=False)
        release.join()
        assert res.code == 0, res
        assert time.monotonic() - t0 >= 1.5  # it waited for the release, then checked
    finally:
        lock.release()
        holder.close()
