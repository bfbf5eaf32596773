"""Restore: write a snapshot back to an image file or a block device.

    run      plan (chunk list -> pack ranges, coalesced), parallel ranged fetches, authenticate,
             decompress, pwrite at every offset a chunk appears; --ignore-errors writes zeros
             over damaged ranges and reports them
    target   open and size the target (sparse file with fresh holes, or an unmounted device
             large enough), write, zero ranges, and say what to do when the disk is full
    options  RestoreOptions and RestoreResult
"""
