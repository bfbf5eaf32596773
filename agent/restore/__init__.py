"""Restore: write a snapshot back to an image file or a block device.

    run      plan (chunk list -> pack ranges, coalesced), parallel ranged fetches, authenticate,
             decompress, pwrite at every offset a chunk appears; --ignore-errors writes zeros
             over damaged ranges and reports them
    target   open and size the target (sparse file with fresh holes, or an unmounted device
             large enough), write, zero ranges, and say what to do when the disk is full
    options  RestoreOptions and RestoreResult
    plan     narrow the plan to what is left: ranges an interrupted run wrote (journal), chunks the
             target already holds (--delta), chunks local images supply (--seed); read-back at the end
    delta    hash a target or seed along the snapshot's chunk boundaries (two threads, native keyed
             BLAKE3), find moved chunks with the repository's chunker, copy and verify chunks
    journal  the restore journal (beside an image file, or in the cache for a disk): which target
             ranges are written and flushed, so the same command resumes; opening the target for it
"""
