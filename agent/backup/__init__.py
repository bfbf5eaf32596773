"""Backup: read a disk or image, cut it into chunks, and store what the repository lacks.

Data flow of one run (agent.backup.run.run_backup):

    source (agent.source.device)  O_DIRECT reads of the data extents, holes skipped
      -> reader.StretchReader      two stretches of the disk at once, each a read thread and a cut
                                   thread (producers.Merge) filling recycled buffers (buffers)
      -> blocks.cut_blocks         FastCDC cuts per block; guided_cut reuses the parent snapshot's
                                   boundaries where the disk is unchanged
      -> pipeline.Pipeline         hash pool -> index lookup -> chunk-list records; zeros recorded
      -> agent.repo.writer         new blobs sealed, packed, uploaded, indexed at checkpoints
      -> snapshot manifest         saved only after the lock is re-checked

Modules:
    run         one run: locks, resumption of unfinished runs, run records, the snapshot
    options     BackupOptions and BackupResult
    pipeline    hashing, dedup lookups, chunk list, progress counts
    reader      split points of the stretches and the merged stream of blocks and holes
    producers   producer threads behind bounded queues (Merge, ReadAhead)
    blocks      reading extents into blocks and cutting them
    guided_cut  parent-guided cutting of incremental backups
    buffers     the bounded pool of page-aligned read buffers
    suspicion   whether a night's new data is far above the usual and incompressible (ransomware)

Memory is bounded by the buffer pool, the hash and seal queues and the packs in flight, not by
the disk size; docs/backup.md and docs/benchmarks.md give the numbers.
"""
