"""What a restore is asked to do (RestoreOptions) and what it reports (RestoreResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class RestoreOptions:
    force: bool = False
    ignore_errors: bool = False
    workers: int = 0  # ranged reads in flight; 0: as the round trips need (agent.restore.window)
    lock_wait: float = 1800.0
    sync: bool = False  # fsync an image file at the end; block devices are always flushed
    #: restore only image bytes [start, start + length) (one partition), to offset 0 of the target
    window: tuple[int, int] | None = None
    #: read an existing target along the snapshot's chunks and write only what differs
    delta: bool = False
    #: with delta: read the whole target even when its stamp says which snapshot it holds
    compare_all: bool = False
    #: local images to copy matching chunks from instead of fetching them
    seeds: list[str] = field(default_factory=list)
    #: where journals of restores to disks live (a file's journal sits beside it); None: disks do not resume
    journal_dir: Path | None = None
    journal_interval: float = 5.0  # seconds between fdatasyncs that make recorded progress survive a reboot
    #: keep a restore journal; not for a scratch image converted afterwards (a VM format starts over)
    resumable: bool = True
    #: the size of a target file (a disk larger or smaller than what is written); default: what is written
    disk_size: int | None = None
    #: writes past the page cache (agent.restore.direct): "auto" once buffered writes turn slow,
    #: "always", or "never"
    direct: Literal["auto", "always", "never"] = "auto"
    #: open and write chunks in worker processes (agent.restore.procs): "auto" from a local repository
    #: on two cores or more, "always" wherever processes can be forked, or "never" (threads)
    processes: Literal["auto", "always", "never"] = "auto"


@dataclass
class RestoreResult:
    snapshot_id: str
    target: str
    size: int
    written_bytes: int
    zero_bytes: int
    duration_s: float
    damaged: list[tuple[int, int]] = field(default_factory=list)
    reused_bytes: int = 0  # --delta: target bytes that were already right
    reads_in_flight: int = 0  # the most ranged reads kept in flight (agent.restore.window)
    seeded: list[tuple[str, int]] = field(default_factory=list)  # (seed, image bytes it supplied)
    resumed_bytes: int = 0  # written by an interrupted run of the same restore, skipped
    verified_bytes: int = 0  # read back and checked at the end (--delta / --seed)
    held_snapshot: str | None = None  # --delta: the snapshot the target held by its stamp (not read)
    shared_bytes: int = 0  # --seed: bytes sharing the seed's blocks (reflinks on XFS, btrfs), not written
    direct_bytes: int = 0  # written past the page cache (agent.restore.direct)
    processes: int = 0  # worker processes that opened and wrote the chunks (agent.restore.procs); 0: threads
