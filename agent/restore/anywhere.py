"""Restore a whole disk onto any target: a disk or file larger or smaller than the image (`--size`),
the last partition and its filesystem grown (`--grow`), or a VM image format (`--format`).

Everything that can refuse is decided before the first byte is written: whether the partitions fit
(resize), which tools are needed and whether they are installed (tools), root where a loop device is
needed (fsgrow). Then the bytes are restored (run), the disk is fixed up (fixup, fsgrow) and, for a
VM format, converted (vmformat).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent.errors import TargetError, UsageError
from agent.progress import Listener, ignore
from agent.repo.repository import Repository
from agent.repo.snapshots import Snapshot
from agent.restore import fixup, fsgrow, tools, vmformat
from agent.restore.loopdev import is_root
from agent.restore.options import RestoreOptions, RestoreResult
from agent.restore.peek import gpt_array_bytes
from agent.restore.resize import Resize, plan_resize
from agent.restore.run import run_restore
from agent.restore.target import holds_no_data, probe_target


@dataclass
class Placement:
    """Where the disk goes: the target file's size (None: the image's, or a larger blank file's),
    whether to grow the last partition, and the image format (None: from the target's extension)."""

    size: int | None = None
    grow: bool = False
    format: str | None = None


@dataclass
class Placed:
    result: RestoreResult
    disk_size: int
    format: str
    gpt_moved: bool = False
    grown_partition: int | None = None
    partition_size: tuple[int, int] | None = None  # the grown partition's size before and after
    filesystem_grown: bool | None = None  # None: --grow was not asked for
    notes: list[str] = field(default_factory=list)


def restore_anywhere(repo: Repository, snap: Snapshot, target: str, opts: RestoreOptions, place: Placement,
                     listener: Listener = ignore) -> Placed:
    fmt = vmformat.choose_format(target, place.format)
    work = target
    if fmt != "raw":
        vmformat.check_target(target, fmt, opts.force)
        work, _ = vmformat.scratch_paths(target)
        vmformat.remove(work)  # left by an interrupted run; named for this target only
        kind, have = "missing", 0
    else:
        kind, have = probe_target(target)
    if kind == "block":
        if place.size is not None:
            raise UsageError(f"--size is for image files; {target} is a disk of {have} bytes")
        disk = have
    else:
        # a larger file holding no data is a disk made for the restore (`truncate -s 100G vm.img`); a file
        # with data is an old image, replaced by one of the snapshot's size
        blank_disk = kind == "file" and have > snap.size and holds_no_data(target)
        disk = place.size if place.size is not None else have if blank_disk else snap.size
    plan = plan_resize(snap.partition_table, snap.size, disk, target, grow=place.grow)
    if plan.scheme == "gpt" and disk < snap.size:  # the real backup table's size, from the primary header
        with repo.lock(exclusive=False, command="restore", wait=opts.lock_wait):
            plan = plan_resize(snap.partition_table, snap.size, disk, target, grow=place.grow,
                               gpt_array_bytes=gpt_array_bytes(repo, snap))
    _preflight(plan, fmt, kind)
    opts = replace(opts, window=(0, plan.write) if plan.write < snap.size else None,
                   disk_size=disk if kind != "block" else None, resumable=fmt == "raw")
    try:
        res = run_restore(repo, snap, work, opts, listener)
        placed = Placed(res, disk, fmt)
        try:
            _fix_up(work, plan, placed)
        except TargetError as exc:
            kept = f"{target} holds the restored image, but" if fmt == "raw" else "the restore finished, but"
            raise TargetError(f"{kept} fitting it to the disk failed: {exc}", hint=exc.hint) from None
        if fmt != "raw":
            vmformat.convert(work, target, fmt)
    finally:
        if fmt != "raw":
            vmformat.remove(work)
    return placed


def _preflight(plan: Resize, fmt: str, kind: str) -> None:
    """Refuse before writing what the fix-up or conversion could not finish."""
    if fmt != "raw":
        tools.require({"qemu-img"}, f"writing a {fmt} image")
    if plan.move_gpt:
        tools.require({"sgdisk"}, "fitting a GPT disk to a disk of another size")
        if plan.sector_size != 512 and kind != "block":
            raise TargetError(f"the snapshot's GPT uses {plan.sector_size}-byte sectors, and an image file is "
                              "read as 512-byte sectors by the partitioning tools",
                              hint="restore it to a disk with that sector size, or to a file of the image's size")
    grow = plan.grow
    if grow is None:
        return
    tools.require({"sgdisk" if plan.scheme == "gpt" else "sfdisk"}, "--grow")
    if fsgrow.growable(grow.filesystem) and not is_root():
        raise TargetError(f"--grow: growing the {grow.filesystem} filesystem of partition {grow.name} needs root "
                          "(a loop device at the partition's offset)",
                          hint="run the restore as root, or restore without --grow and grow it where the disk "
                               "is used")
    tools.require(fsgrow.required_tools(grow.filesystem), f"growing the {grow.filesystem} filesystem")


def _fix_up(path: str, plan: Resize, placed: Placed) -> None:
    if plan.move_gpt:
        fixup.move_gpt(path)
        placed.gpt_moved = True
    if plan.grow is None:
        return
    n = plan.grow.number
    _, old = fixup.partition_range(path, n)
    start, size = fixup.grow_partition(path, plan.scheme, n)
    placed.grown_partition, placed.partition_size = n, (old, size)
    done = fsgrow.grow_filesystem(path, start, size, plan.grow.filesystem, plan.grow.name)
    placed.filesystem_grown = done.grown
    placed.notes.append(done.note)
