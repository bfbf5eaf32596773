"""Hidden temporaries of the file-system backends (local, SFTP, SMB), and the leftovers they become.

These backends write each object to ".tmp-<name>.<random>" beside its final name and rename it
into place, so readers never see a part. A writer killed in between (or cut off from the server)
leaves the temporary behind; listings skip dot-names, so only `list_leftovers` finds it. The
checks here make sure `remove_leftover` can only ever remove such a temporary, never an object.
"""

from __future__ import annotations

import secrets

from backends.base import Leftover, validate_key
from backends.errors import InvalidKey

PREFIX = ".tmp-"
KIND = "temporary file"


def temp_name(name: str) -> str:
    """A fresh hidden name to write `name` under before it is renamed into place."""
    return f"{PREFIX}{name}.{secrets.token_hex(6)}"


def is_temp(name: str) -> bool:
    return name.startswith(PREFIX) and len(name) > len(PREFIX)


def leftover(rel_path: str, size: int, mtime: float, now: float) -> Leftover:
    """A temporary at `rel_path` (under the repository root, '/'-separated) as a Leftover."""
    return Leftover(KIND, rel_path, size, max(0.0, now - mtime), rel_path)


def checked_path(item: Leftover) -> str:
    """The root-relative path of a temporary `item` names; InvalidKey for anything else (an
    object's key, a path outside the root), so a forged or mistaken leftover removes nothing."""
    directory, _, name = item.ref.rpartition("/")
    if item.kind != KIND or not is_temp(name):
        raise InvalidKey(f"not a leftover temporary file: {item.ref!r}")
    if directory:
        validate_key(directory)
    return item.ref
