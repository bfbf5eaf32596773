"""After the bytes are restored onto a disk of another size: move the backup GPT to the new end and
extend the last partition, with the real partitioning tools (sgdisk for GPT, sfdisk for MBR).

The tables are read back with the agent's own parsers (agent.source) to confirm what the tools did:
the extended partition keeps its start, type, unique GUID, name and attribute flags.
"""

from __future__ import annotations

import os
import re

from agent.errors import TargetError
from agent.restore.tools import run
from agent.source.bytefields import Image, guid_le, u64
from agent.source.gpt import GptHeader, find_gpt
from agent.source.partitions import read_partition_table

_PROBLEMS = re.compile(r"Identified (\d+) problems?", re.I)


def move_gpt(path: str) -> None:
    """`sgdisk -e`: backup header and table to the last sectors, usable area and protective MBR to
    the disk's size; then `sgdisk -v` must find no problem."""
    run("sgdisk", "-e", path)
    verify_gpt(path)


def verify_gpt(path: str) -> None:
    proc = run("sgdisk", "-v", path)  # exits 0 even when it lists problems
    out = proc.stdout + proc.stderr
    found = _PROBLEMS.search(out)
    if found or "No problems found" not in out:
        what = " ".join(ln.strip() for ln in out.splitlines() if ln.strip().startswith("Problem:")) or out.strip()
        raise TargetError(f"the partition table of {path} is not valid after the restore (sgdisk -v: {what})",
                          hint="the data is restored; repair the table with `sgdisk -e` / gdisk's expert menu")


def grow_partition(path: str, scheme: str, number: int) -> tuple[int, int]:
    """Extend partition `number` to the last usable sector; its (start, size) in bytes afterwards."""
    if scheme == "gpt":
        _grow_gpt(path, number)
    else:
        _grow_mbr(path, number)
    return partition_range(path, number)


def _grow_gpt(path: str, number: int) -> None:
    hdr = _gpt_header(path)
    entry = hdr.entries[(number - 1) * hdr.entry_size:number * hdr.entry_size]
    first, attrs = u64(entry, 32), u64(entry, 48)
    type_guid, guid = guid_le(entry[0:16]), guid_le(entry[16:32])
    name = entry[56:128].decode("utf-16-le", errors="replace").split("\x00", 1)[0]
    # recreate the entry in its slot: same first sector, the largest end, every field set again
    args = ["sgdisk", "--set-alignment=1", f"--delete={number}", f"--new={number}:{first}:0",
            f"--typecode={number}:{type_guid}", f"--partition-guid={number}:{guid}",
            f"--change-name={number}:{name}"]
    args += [f"--attributes={number}:set:{bit}" for bit in range(64) if attrs >> bit & 1]
    run(*args, path)
    verify_gpt(path)
    after = _gpt_header(path)
    new = after.entries[(number - 1) * after.entry_size:number * after.entry_size]
    if new[:32] != entry[:32] or new[48:] != entry[48:] or u64(new, 32) != first or u64(new, 40) != after.last_usable:
        raise TargetError(f"extending partition {number} of {path} changed more than its end",
                          hint="compare `sgdisk -i` with the snapshot's table (`agent snapshots --json`)")


def _grow_mbr(path: str, number: int) -> None:
    # ", +": keep the start and the type, take all the space after it
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", "-N", str(number), path, stdin=", +\n")


def partition_range(path: str, number: int) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        table = read_partition_table(lambda off, n: os.pread(fd, n, off), size)
    finally:
        os.close(fd)
    for p in table.partitions:
        if p.number == number:
            return p.start, p.size
    raise TargetError(f"partition {number} is missing from {path} after it was extended")


def _gpt_header(path: str) -> GptHeader:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        hdr = find_gpt(Image(lambda off, n: os.pread(fd, n, off), size), try_backup=False, warnings=[])
    finally:
        os.close(fd)
    if hdr is None:
        raise TargetError(f"{path} has no readable GPT after the restore")
    return hdr

