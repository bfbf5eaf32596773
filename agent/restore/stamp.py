"""What an image file holds after a restore: a stamp naming the snapshot, kept in an extended
attribute of the file (`user.agent.restored`).

Why: a `--delta` restore onto an image this tool restored (last night's standby copy of a server,
a VM image rolled forward every day) would otherwise read the whole image to learn what it
holds; with the stamp it compares the two snapshots' chunk lists and writes only the chunks that
differ, reading nothing of the target but the chunks that moved within it.

When it is trusted: the stamp records the file's size and modification time (nanoseconds) as the
restore left them; any later write changes the modification time, so a file written since is
compared by reading, as before. Nothing else can produce a matching stamp: it is authenticated
with the repository's keyed hash, and it names the image range that was restored (a partition,
or the whole disk). A modification time without a sub-second part (a filesystem that keeps
seconds only, where a write in the same second would go unseen) is not trusted. A copy made with
its attributes (`cp -a`, `rsync -aX`) holds the same bytes and keeps a valid stamp.
`--compare-all` reads the target anyway. Filesystems without user extended attributes simply
get no stamp.
"""

from __future__ import annotations

import hmac
import json
import os
import stat
from dataclasses import dataclass
from typing import Callable

XATTR = "user.agent.restored"
_SECOND = 1_000_000_000


@dataclass(frozen=True)
class Stamp:
    repository: str
    snapshot: str
    window: tuple[int, int]  # the image range restored to offset 0
    size: int  # the file's, when stamped
    mtime_ns: int
    file: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the file it was read from

    def still_describes(self, fd: int) -> bool:
        """The file a restore opened is the one the stamp was read from, unchanged since."""
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (*self.file, self.size, self.mtime_ns)


def _mac(key: Callable[[memoryview], bytes], body: bytes) -> str:
    return key(memoryview(b"agent restore stamp v1\x00" + body)).hex()


def write_stamp(fd: int, repository: str, snapshot: str, window: tuple[int, int],
                key: Callable[[memoryview], bytes]) -> bool:
    """Stamp the file after a restore's last write; False where the filesystem keeps no user attributes."""
    st = os.fstat(fd)
    body = json.dumps({"repository": repository, "snapshot": snapshot, "window": list(window),
                       "size": st.st_size, "mtime_ns": st.st_mtime_ns}, sort_keys=True).encode()
    try:
        os.setxattr(fd, XATTR, json.dumps({"stamp": body.decode(), "mac": _mac(key, body)}).encode())
    except OSError:
        return False
    return True


def clear_stamp(fd: int) -> None:
    """Before a restore writes into an existing file: what it holds is about to change."""
    try:
        os.removexattr(fd, XATTR)
    except OSError:
        pass


def read_stamp(path: str, repository: str, key: Callable[[memoryview], bytes]) -> Stamp | None:
    """The file's stamp when it still describes the file (same size and modification time) and this
    repository made it; None otherwise, or where there is none."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        raw = os.getxattr(path, XATTR)
        outer = json.loads(raw)
        body = outer["stamp"].encode()
        if not isinstance(outer.get("mac"), str) or not hmac.compare_digest(outer["mac"], _mac(key, body)):
            return None
        fields = json.loads(body)
        stamp = Stamp(fields["repository"], fields["snapshot"], (int(fields["window"][0]), int(fields["window"][1])),
                      int(fields["size"]), int(fields["mtime_ns"]), (st.st_dev, st.st_ino))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    if stamp.repository != repository or (stamp.size, stamp.mtime_ns) != (st.st_size, st.st_mtime_ns):
        return None
    if stamp.mtime_ns % _SECOND == 0:  # whole seconds: a write in the same second would not show
        return None
    return stamp
