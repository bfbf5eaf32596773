"""Fit a snapshot's disk onto a target of another size: how much of the image to write, what to fix
up afterwards, and the refusal, before anything is written, when a partition would not fit.

Pure: it reads the partition table recorded in the snapshot's manifest (agent.source.partitions),
so it is decided before the first byte is fetched and can be tested on any table.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import units
from agent.errors import TargetError, UsageError

#: entries x entry size of the GPT every partitioner writes; the real one is read when it matters
STANDARD_GPT_ARRAY = 128 * 128
_MBR_EXTENDED = {"0x05", "0x0f", "0x85"}


@dataclass(frozen=True)
class Grow:
    """The partition `--grow` extends to the end of the disk, and what it holds."""

    number: int
    name: str  # for messages: "2 (root)"
    filesystem: str | None


@dataclass(frozen=True)
class Resize:
    image_size: int
    disk_size: int
    scheme: str  # "gpt", "mbr" or "none"
    sector_size: int
    write: int  # image bytes written from offset 0: all of them, or as many as the disk holds
    move_gpt: bool  # the backup GPT goes to the new end of the disk
    grow: Grow | None

    @property
    def fixes(self) -> bool:
        return self.move_gpt or self.grow is not None


def plan_resize(table: dict | None, image_size: int, disk_size: int, target: str, *, grow: bool = False,
                gpt_array_bytes: int = STANDARD_GPT_ARRAY) -> Resize:
    """What restoring an image of `image_size` with partition `table` onto `disk_size` bytes takes.
    TargetError when a partition does not fit (naming it and the bytes missing); UsageError when
    --grow has nothing it can extend."""
    table = table or {}
    scheme = str(table.get("scheme")) if table.get("scheme") in ("gpt", "mbr") else "none"
    ss = int(table.get("sector_size") or 512)
    parts = [p for p in table.get("partitions") or [] if isinstance(p, dict)]
    resized = disk_size != image_size
    if scheme == "gpt" and (resized or grow):
        if any(str(w).startswith("primary GPT header invalid") for w in table.get("warnings") or []):
            raise TargetError("the snapshot's primary GPT header is damaged (its backup at the old end of the disk "
                              "was read instead), so it cannot be moved to a disk of another size",
                              hint="restore it to a disk or --size of exactly the image's size "
                                   f"({image_size} bytes), then repair the table with sgdisk")
        if resized and disk_size % ss:
            raise TargetError(f"{target}: {disk_size} bytes is not a whole number of {ss}-byte sectors",
                              hint=f"choose a size that is a multiple of {ss}")
    reserve = (-(-gpt_array_bytes // ss) + 1) * ss if scheme == "gpt" else 0  # backup table and header
    if disk_size < image_size:
        _check_fit(scheme, parts, reserve, image_size, disk_size, target)
    return Resize(image_size=image_size, disk_size=disk_size, scheme=scheme, sector_size=ss,
                  write=min(image_size, disk_size), move_gpt=scheme == "gpt" and (resized or grow),
                  grow=_last_partition(scheme, parts) if grow else None)


def _check_fit(scheme: str, parts: list[dict], reserve: int, image_size: int, disk_size: int, target: str) -> None:
    if scheme == "none":
        raise TargetError(f"{target} holds {disk_size} bytes, fewer than the image ({image_size}); choose a larger "
                          "disk", hint="a snapshot without a partition table (a bare filesystem) needs a target of "
                                       "its full size")
    short = sorted(((_end(p) + reserve - disk_size, p) for p in parts if _end(p) + reserve > disk_size),
                   key=lambda t: (-t[0], int(t[1].get("number") or 0)))
    if not short:
        return
    lack = short[0][0]
    names = " and ".join(f"partition {_name(p)}" for _, p in sorted(short, key=lambda t: int(t[1].get("number") or 0)))
    after = " and the backup GPT after it" if reserve else ""
    raise TargetError(f"{target} holds {disk_size} bytes, too few for {names}: the disk lacks {lack} bytes "
                      f"({units.size(lack)}) to hold {'it' if len(short) == 1 else 'them'}{after}",
                      hint=f"choose a disk of at least {disk_size + lack} bytes ({units.size(disk_size + lack)}); "
                           "the free space after the last partition is not needed")


def _last_partition(scheme: str, parts: list[dict]) -> Grow:
    if scheme == "none" or not parts:
        raise UsageError("--grow extends the last partition, but the snapshot has no partition table (a bare "
                         "filesystem or a partition was backed up)",
                         hint="restore without --grow, then grow the filesystem with its own tool")
    # MBR: logical partitions (5+) sit inside the extended one; only a primary is extended
    pool = [p for p in parts if scheme == "gpt" or int(p.get("number") or 0) <= 4]
    last = max(pool, key=lambda p: (_end(p), int(p.get("number") or 0)))
    if scheme == "mbr" and str(last.get("type_id", "")).lower() in _MBR_EXTENDED:
        raise UsageError(f"--grow extends the last primary partition, and partition {_name(last)} is an extended "
                         "partition holding logical ones",
                         hint="restore without --grow, then grow the extended and the last logical partition "
                              "with fdisk or parted")
    return Grow(number=int(last["number"]), name=_name(last), filesystem=last.get("filesystem"))


def _end(p: dict) -> int:
    return int(p.get("start") or 0) + int(p.get("size") or 0)


def _name(p: dict) -> str:
    label = p.get("fs_label") or p.get("name")
    return f"{p.get('number')} ({label})" if label else str(p.get("number"))
