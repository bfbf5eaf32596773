"""Restore into a virtual machine's disk format (qcow2, VHDX, VMDK) with qemu-img.

The disk is restored (and fixed up) as a sparse raw file beside the target, converted with
`qemu-img convert` (zeros stay unallocated) into a second file beside the target, checked with
`qemu-img check`, and only then renamed onto the target: an image under the target's name is always
complete. Both helper files are removed on success, failure and Ctrl-C. Space needed: the disk's data
twice, until the raw file is removed.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import TargetError, UsageError
from agent.restore.tools import ToolFailed, last_lines, run

FORMATS = ("raw", "qcow2", "vhdx", "vmdk")
_BY_SUFFIX = {".qcow2": "qcow2", ".vhdx": "vhdx", ".vmdk": "vmdk"}


def choose_format(target: str, requested: str | None) -> str:
    """--format, else from the target's extension (.qcow2, .vhdx, .vmdk), else raw."""
    if requested is not None:
        fmt = requested.strip().lower()
        if fmt not in FORMATS:
            raise UsageError(f"unknown image format {requested!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    return _BY_SUFFIX.get(Path(target).suffix.lower(), "raw")


def scratch_paths(target: str) -> tuple[str, str]:
    """(raw disk, converted image) beside the target: same filesystem, so the rename is atomic."""
    return f"{target}.agent-raw.tmp", f"{target}.agent-partial.tmp"


def check_target(target: str, fmt: str, force: bool) -> None:
    """Refuse, before anything is written, what the final rename would wrongly replace."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if not Path(target).parent.is_dir():
            raise TargetError(f"{target}: the directory does not exist") from None
        return
    if not Path(target).is_file():
        raise TargetError(f"{target} is not a regular file; a {fmt} image is written to a file",
                          hint="give a file name, or --format raw to write the disk itself")
    if st.st_size and not force:
        raise TargetError(f"{target} already exists and is not empty", hint="add --force to overwrite it")


def convert(raw: str, target: str, fmt: str) -> None:
    """raw -> fmt under a temporary name, `qemu-img check`ed, then renamed onto `target`."""
    _, partial = scratch_paths(target)
    try:
        remove(partial)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))  # a disk's data: private
        run("qemu-img", "convert", "-q", "-f", "raw", "-O", fmt, raw, partial)
        check = run("qemu-img", "check", "-q", "-f", fmt, partial, check=False)
        if check.returncode != 0:
            raise ToolFailed(f"qemu-img check found the converted {fmt} image damaged ({last_lines(check)}); "
                             f"nothing was written to {target}")
        os.replace(partial, target)
    except OSError as exc:
        raise TargetError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        remove(partial)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
