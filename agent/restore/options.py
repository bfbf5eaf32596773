"""What a restore is asked to do (RestoreOptions) and what it reports (RestoreResult)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RestoreOptions:
    force: bool = False
    ignore_errors: bool = False
    workers: int = 3  # ranged reads in flight: enough to keep two cores decompressing while one waits
    lock_wait: float = 1800.0
    sync: bool = False  # fsync an image file at the end; block devices are always flushed
    #: restore only image bytes [start, start + length) (one partition), to offset 0 of the target
    window: tuple[int, int] | None = None
    #: the size of a target file (a disk larger or smaller than what is written); default: what is written
    disk_size: int | None = None


@dataclass
class RestoreResult:
    snapshot_id: str
    target: str
    size: int
    written_bytes: int
    zero_bytes: int
    duration_s: float
    damaged: list[tuple[int, int]] = field(default_factory=list)
