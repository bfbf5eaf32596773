"""Linux swap: only the header page (signature, UUID, label, bad-page list) holds anything that
outlives the running system, so every page after it, up to the area's last page, is free.

The page size is where the signature sits (it ends the first page). A hibernation image or an
old-format area replaces the signature, and is read whole: its pages are someone's memory.
"""

from __future__ import annotations

import struct

from agent.source.allocation.bounds import clip, exact
from agent.source.allocation.model import Allocation, Read, ReadWhole

PAGE_SIZES = (4096, 8192, 16384, 32768, 65536)
HIBERNATION = (b"S1SUSPEND", b"S2SUSPEND", b"ULSUSPEND", b"LINHIB0001")


def free_space(read: Read, size: int) -> Allocation:
    """Free byte ranges of a swap area; ReadWhole for anything but a version 1 area."""
    head = read(0, PAGE_SIZES[-1])
    page = next((p for p in PAGE_SIZES if head[p - 10:p] == b"SWAPSPACE2"), None)
    if page is None:
        for p in PAGE_SIZES:
            tail = head[p - 10:p]
            if tail == b"SWAP-SPACE":
                raise ReadWhole("old swap format")
            if tail.startswith(HIBERNATION):
                raise ReadWhole("swap holds a hibernation image")
        raise ReadWhole("no swap signature")
    version, last_page = struct.unpack_from("<II", exact(read, 1024, 8, "swap header"))
    if version == 0x01000000:  # written on a big-endian machine
        last_page = struct.unpack(">I", struct.pack("<I", last_page))[0]
    elif version != 1:
        raise ReadWhole("unknown swap version")
    return Allocation(clip([(page, (last_page + 1) * page)], size), "swap header")
