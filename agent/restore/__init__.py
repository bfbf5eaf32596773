"""Restore: write a snapshot back to an image file or a block device.

    fetch    plan (chunk list -> pack ranges, coalesced) and one ranged read per group: authenticate,
             decompress, check each chunk's id (also what `agent verify` reads with)
    run      parallel fetches, pwrite at every offset a chunk appears; --ignore-errors writes zeros
             over damaged ranges and reports them
    procs    from a local repository: worker processes (forked with the plan) open and write the
             chunks of each range the restore process read, so the cores share no interpreter lock
    writer   the thread that writes fetched chunks in order (contiguous ones in one pwritev), so
             fetching workers never wait on the target's inode lock; tickets say what a journal may record
    direct   its writes: through the page cache while that is fast, then each run's whole blocks with
             O_DIRECT from one reused buffer (the ragged ends still buffered)
    target   open and size the target (sparse file with fresh holes, or an unmounted device
             large enough), write, zero ranges, and say what to do when the disk is full
    options  RestoreOptions and RestoreResult
    plan     narrow the plan to what is left: ranges an interrupted run wrote (journal), chunks the
             target already holds (--delta), chunks local images supply (--seed); read-back at the end
    delta    hash a target or seed along the snapshot's chunk boundaries (two threads, native keyed
             BLAKE3), find moved chunks with the repository's chunker, copy and verify chunks
    stamp    the extended attribute that says which snapshot a restored image file holds, so that
             --delta compares chunk lists instead of reading it
    share    a seed's blocks shared with the new image (FICLONERANGE) on XFS and btrfs, else copied
    journal  the restore journal (beside an image file, or in the cache for a disk): which target
             ranges are written and flushed, so the same command resumes; opening the target for it
    anywhere a whole disk onto any target: another size, --grow, a VM format; refusals before writing
    resize   pure planning: what to write, whether the partitions fit a smaller disk, what --grow extends
    peek     the primary GPT header read from the snapshot (the backup table's size, for a smaller disk)
    fixup    sgdisk -e / -v and the extended last partition (sgdisk, sfdisk), read back with agent.source
    fsgrow   resize2fs, ntfsresize, xfs_growfs on a loop device at the partition's offset (root)
    loopdev  that loop device, always detached
    vmformat qcow2 / VHDX / VMDK through qemu-img: convert, check, rename into place
    tools    the external tools: checked before writing (naming their package), run with their errors
"""
