"""Allocation bitmaps to free byte ranges, at C speed over runs of whole bytes.

A bitmap of a large disk has tens of millions of bits; walking them in Python would take
minutes. Runs of 0x00 bytes (all free) are found with a regular expression, and only the bytes
at a run's edges, partly used, are looked at bit by bit.
"""

from __future__ import annotations

import re

_FREE_BYTES = re.compile(rb"\x00+")
_MIXED = re.compile(rb"[^\x00\xff]")


def free_runs(bitmap: bytes | memoryview, units: int, unit_size: int, base: int = 0,
              first_unit: int = 0) -> list[tuple[int, int]]:
    """Free [start, end) byte ranges of a little-endian bitmap (bit k of byte k//8 is unit k; a clear
    bit is free) covering `units` units of `unit_size` bytes; unit 0 sits at byte `base`, and units
    before `first_unit` are ignored. Ranges are merged across byte edges."""
    data = bytes(bitmap[:(units + 7) // 8])
    out: list[tuple[int, int]] = []

    def add(lo: int, hi: int) -> None:  # units [lo, hi)
        lo, hi = max(lo, first_unit), min(hi, units)
        if lo >= hi:
            return
        if out and out[-1][1] == base + lo * unit_size:
            out[-1] = (out[-1][0], base + hi * unit_size)
        else:
            out.append((base + lo * unit_size, base + hi * unit_size))

    pos = 0
    for m in _FREE_BYTES.finditer(data):
        _partial(data, pos, m.start(), add)
        add(m.start() * 8, m.end() * 8)
        pos = m.end()
    _partial(data, pos, len(data), add)
    return out


def _partial(data: bytes, lo: int, hi: int, add) -> None:
    """The clear bits of bytes [lo, hi), none of them 0x00: only bytes that are partly used are
    looked at bit by bit (whole 0xFF bytes are skipped by the search)."""
    for m in _MIXED.finditer(data, lo, hi):
        k, b = m.start(), data[m.start()]
        for bit in range(8):
            if not b >> bit & 1:
                add(k * 8 + bit, k * 8 + bit + 1)
