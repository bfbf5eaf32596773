"""Restore: write a snapshot back to an image file or a block device.

    fetch    plan (chunk list -> pack ranges, coalesced) and one ranged read per group: authenticate,
             decompress, check each chunk's id (also what `agent verify` reads with)
    run      parallel fetches, pwrite at every offset a chunk appears; --ignore-errors writes zeros
             over damaged ranges and reports them
    target   open and size the target (sparse file with fresh holes, or an unmounted device
             large enough), write, zero ranges, and say what to do when the disk is full
    options  RestoreOptions and RestoreResult
"""
