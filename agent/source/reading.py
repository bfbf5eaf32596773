"""What a backup reads of a disk: per partition, only the blocks its filesystem uses, the header of
a swap partition, everything of a filesystem it cannot vouch for, nothing of a partition left out.

The plan is made once, before reading, from the partition table and each filesystem's own
allocation structures (agent.source.allocation). It is recorded in the snapshot, so `agent
snapshots` and `agent ls` can say what was read and how, and a restore knows which ranges of a
partial snapshot to leave alone on a device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from agent.errors import UsageError
from agent.source.allocation import reader_for
from agent.source.allocation.model import Allocation, ReadWhole
from agent.source.bytefields import Image
from agent.source.filesystems import with_filesystem
from agent.source.partition_model import Partition, PartitionTable
from agent.source.skipmap import SkipMap, merged, subtract

Read = Callable[[int, int], bytes]

#: why a partition is read whole when nothing about its filesystem can be trusted or parsed
_WHOLE = {
    None: "no filesystem recognised",
    "LUKS": "encrypted (LUKS)",
    "BitLocker": "encrypted (BitLocker)",
    "btrfs": "btrfs is read whole",
    "LVM2 PV": "LVM physical volume",
    "jbd": "external journal",
}


_CONTAINERS = frozenset({"extended", "extended (LBA)", "Linux extended"})


@dataclass
class PartReading:
    """How one partition (number 0: a filesystem without a partition table) is read."""

    number: int
    start: int
    size: int
    filesystem: str | None
    read: str  # "used" (free blocks skipped), "whole", "header" (swap), "skipped" (left out)
    method: str = ""  # how its free space was found ("ext4 block bitmaps")
    reason: str = ""  # why it is read whole or left out
    free_bytes: int = 0  # not read and stored as zeros
    excluded: list[dict] = field(default_factory=list)  # files counted as free: [{"name", "bytes"}]


@dataclass
class ReadingPlan:
    mode: str  # "used" or "all" (--all-blocks)
    partitions: list[PartReading]
    skip: SkipMap  # every range not stored: free space and left-out partitions
    not_backed_up: list[tuple[int, int]]  # left-out partitions: a restore leaves these alone on a device
    selected: list[str] = field(default_factory=list)  # --partitions as given
    keep_pagefile: bool = False

    @property
    def free_bytes(self) -> int:
        return sum(p.free_bytes for p in self.partitions)

    def to_dict(self) -> dict:
        """For the snapshot manifest ("reading")."""
        doc: dict = {"mode": self.mode, "partitions": [asdict(p) for p in self.partitions]}
        if self.not_backed_up:
            doc["not_backed_up"] = [list(r) for r in self.not_backed_up]
            doc["selected"] = self.selected
        if self.keep_pagefile:
            doc["keep_pagefile"] = True
        return doc

    def same_choice(self, recorded: dict | None) -> bool:
        """The options a recorded plan was made with are this one's (an unchanged image reuses it)."""
        recorded = recorded or {"mode": "all"}
        return (recorded.get("mode") == self.mode and recorded.get("selected", []) == self.selected
                and bool(recorded.get("keep_pagefile")) == self.keep_pagefile)


def _matches(p: Partition, name: str) -> bool:
    """As `agent restore --partition` names them: 2 or p2, else a filesystem label or GPT name (any case)."""
    number = name[1:] if name[:1] in ("p", "P") and name[1:].isdigit() else name
    if number.isdigit():
        return int(number) == p.number
    want = name.casefold()
    return bool(want) and want in ((p.fs_label or "").casefold(), p.name.casefold())


def _select(parts: list[Partition], only: list[str]) -> list[Partition]:
    """The partitions named by number, filesystem label or GPT name; an unknown name is an error."""
    chosen: list[Partition] = []
    for name in only:
        found = [p for p in parts if _matches(p, name)]
        if not found:
            known = ", ".join(f"{p.number}" + (f" ({p.fs_label or p.name})" if p.fs_label or p.name else "")
                              for p in parts) or "none"
            raise UsageError(f"no partition {name!r} on this disk (partitions: {known})")
        chosen.extend(p for p in found if p not in chosen)
    return chosen


def _read_in(read: Read, start: int, size: int) -> Read:
    def read_part(off: int, length: int) -> bytes:
        if off < 0 or off >= size:
            return b""
        return read(start + off, min(length, size - off))
    return read_part


def _allocation(p: Partition, read: Read, keep_pagefile: bool) -> Allocation:
    if p.filesystem in _WHOLE or p.filesystem is None:
        raise ReadWhole(_WHOLE.get(p.filesystem, f"{p.filesystem} is read whole"))
    free_space = reader_for(p.filesystem)
    if free_space is None:
        raise ReadWhole(f"{p.filesystem} is read whole (its free space is not read)")
    part_read = _read_in(read, p.start, p.size)
    try:
        if p.filesystem == "ntfs":
            return free_space(part_read, p.size, keep_pagefile=keep_pagefile)
        return free_space(part_read, p.size)
    except OSError as exc:
        raise ReadWhole(f"its allocation map could not be read ({exc.strerror or exc})") from None


def plan_reading(read: Read, size: int, table: PartitionTable | None, *, all_blocks: bool = False,
                 keep_pagefile: bool = False, only: list[str] | None = None) -> ReadingPlan:
    """The reading plan for a source of `size` bytes. `only`: partitions to back up (the rest of the
    disk outside every partition, where tables and boot loaders live, is always kept)."""
    # an MBR extended partition only contains the logical ones (and their link sectors)
    parts = [p for p in table.partitions if p.type_name not in _CONTAINERS] if table is not None else []
    if table is None or table.scheme == "none":
        whole = with_filesystem(Image(read, size), number=0, start=0, size=size, type_id="", type_name="",
                                name="", guid=None)
        parts = [whole] if whole.filesystem else []
        if only:
            raise UsageError("--partitions needs a disk with a partition table; this source has none")
    chosen = _select(parts, only) if only else parts
    readings: list[PartReading] = []
    skip: list[tuple[int, int]] = []
    left_out: list[tuple[int, int]] = []
    for p in parts:
        entry = PartReading(p.number, p.start, p.size, p.filesystem, "whole")
        readings.append(entry)
        if p not in chosen:
            entry.read, entry.reason, entry.free_bytes = "skipped", "not selected (--partitions)", p.size
            left_out.append((p.start, p.start + p.size))
            continue
        if all_blocks:
            entry.reason = "--all-blocks"
            continue
        try:
            alloc = _allocation(p, read, keep_pagefile)
        except ReadWhole as exc:
            entry.reason = str(exc)
            continue
        entry.read = "header" if p.filesystem == "swap" else "used"
        entry.method = alloc.method
        entry.free_bytes = alloc.free_bytes
        entry.excluded = [{"name": name, "bytes": n} for name, n in alloc.excluded]
        skip.extend((p.start + lo, p.start + min(hi, p.size)) for lo, hi in alloc.free if lo < p.size)
    # where partitions overlap (a damaged or hand-made table), one's free space may be another's
    # data: nothing there is skipped
    shared = _overlaps(parts)
    return ReadingPlan("all" if all_blocks else "used", readings,
                       SkipMap(subtract(merged(skip + left_out), shared)), subtract(merged(left_out), shared),
                       list(only or []), keep_pagefile)


def _overlaps(parts: list[Partition]) -> list[tuple[int, int]]:
    """Byte ranges that lie in more than one partition."""
    spans = sorted((p.start, p.start + p.size) for p in parts)
    out = []
    reach = 0
    for start, end in spans:
        if start < reach:
            out.append((start, min(end, reach)))
        reach = max(reach, end)
    return merged(out)
