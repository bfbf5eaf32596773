"""`SNAPSHOT[:PARTITION[:/path]]`, as `agent ls` and `agent extract` take it.

`latest:2:/etc`, `3f9a2c1e:EFI:/EFI/BOOT`, `latest` (the partitions). With `--at`, the snapshot
part is left out: `2:/var/lib`. A path always starts with `/`, so a colon inside it is kept. A
snapshot of one partition or filesystem (no partition table) takes a path directly: `latest:/etc`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import UsageError


@dataclass(frozen=True)
class Spec:
    snapshot: str | None  # id prefix or "latest"; None with --at
    partition: str | None
    path: str | None


def parse_spec(text: str, *, with_snapshot: bool = True) -> Spec:
    head, slash, rest = text.partition(":/")
    path = "/" + rest if slash else None
    if path is not None and path != "/":
        path = path.rstrip("/")
    parts = head.split(":") if head else []
    if not with_snapshot:
        parts = [""] + parts
    if not parts or len(parts) > 2 or (with_snapshot and not parts[0]):
        raise UsageError(f"cannot read {text!r}: give SNAPSHOT[:PARTITION[:/path]], e.g. latest:2:/etc"
                         if with_snapshot else f"cannot read {text!r}: give PARTITION[:/path], e.g. 2:/etc")
    partition = parts[1] if len(parts) == 2 and parts[1] else None
    return Spec(parts[0] or None, partition, path)  # a path without a partition: a bare filesystem image
