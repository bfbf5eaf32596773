"""A loop device over one partition of a restored disk (`losetup -o OFFSET --sizelimit SIZE`), for the
filesystem tools that want a block device of their own. Needs root; always detached again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from agent.errors import TargetError
from agent.restore.tools import run


def is_root() -> bool:
    return os.geteuid() == 0


@contextmanager
def loop_device(path: str, offset: int, size: int) -> Iterator[str]:
    """/dev/loopN showing bytes [offset, offset + size) of `path`, detached on the way out, also on
    failure. (`--partscan` would need partition devices, which not every kernel makes for loops.)"""
    if not is_root():
        raise TargetError("a loop device needs root", hint="run the restore as root")
    dev = run("losetup", "--find", "--show", "--offset", str(offset), "--sizelimit", str(size), path).stdout.strip()
    if not dev.startswith("/dev/"):
        raise TargetError(f"losetup printed no device for {path} ({dev!r})")
    try:
        yield dev
    finally:
        run("losetup", "--detach", dev, check=False)
