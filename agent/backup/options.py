"""What a backup is asked to do (BackupOptions) and what it reports (BackupResult)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime

from agent.backup.suspicion import Thresholds


@dataclass
class BackupOptions:
    tags: list[str] = field(default_factory=list)
    time: datetime | None = None
    host: str | None = None
    workers: int = max(2, os.cpu_count() or 2)
    uploads: int = 0  # packs uploading at once; 0: the backend's connection limit, at most 4
    checkpoint_bytes: int = 256 << 20
    lock_wait: float = 0.0  # seconds to wait for a running prune
    deadline: datetime | None = None  # stop cleanly at this time (--stop-at / --max-duration)
    stop: threading.Event | None = None  # set by a signal handler: stop cleanly now
    direct_io: bool = True  # read the source with O_DIRECT where possible (agent.source.device)
    stretches: int = 2  # stretches of the disk read and cut at once (agent.backup.reader)
    stretch_min: int = 256 << 20  # smaller sources are read front to back in one stretch
    all_blocks: bool = False  # read free space too (forensics); default: used blocks only (agent.source.reading)
    keep_pagefile: bool = False  # store NTFS pagefile.sys, hiberfil.sys, swapfile.sys
    partitions: list[str] = field(default_factory=list)  # back up only these (numbers, labels, GPT names)
    force_read: bool = False  # read an image file even when it is unchanged since the parent snapshot
    suspicion: Thresholds = field(default_factory=Thresholds)  # when a night is flagged suspicious


@dataclass
class BackupResult:
    snapshot_id: str | None  # None when the run stopped early (see `stopped`)
    source: str
    source_bytes: int
    read_bytes: int
    zero_bytes: int
    new_bytes: int
    stored_bytes: int
    chunks: int
    new_chunks: int
    duration_s: float
    warnings: list[str]
    recovered_packs: int = 0
    uploaded_bytes: int = 0
    stopped: str | None = None  # why an incomplete run stopped; it resumes next time
    resumed: int = 0  # earlier incomplete runs of this source whose uploads this run reused
    source_changed: bool = False  # the image file was written while it was read; the snapshot is kept, flagged
    skipped_free_bytes: int = 0  # free space, swap and left-out partitions: not read, stored as zeros
    unchanged_from: str | None = None  # the parent snapshot whose chunk list an unchanged image file reused
    reading: dict = field(default_factory=dict)  # the reading plan as recorded (agent.source.reading)
    suspicious: dict | None = None  # the snapshot's suspicion note (agent.backup.suspicion), when flagged
    protected_id: str | None = None  # then: the snapshot before it, kept from `forget` until acknowledged

    @property
    def complete(self) -> bool:
        return self.stopped is None

    @property
    def dedup_ratio(self) -> float:
        return self.source_bytes / self.stored_bytes if self.stored_bytes else float("inf")
