"""Browse: read a snapshot's image, partitions and files in place, without restoring the disk.

    image   SnapshotImage: read(offset, length) of any snapshot, chunk by chunk, with a bounded cache
    fs      the reader interface (list and read files), and The Sleuth Kit (pytsk3) for most filesystems
    xfs     XFS, which The Sleuth Kit lacks: the agent's own small read-only reader
    extract copy files and directory trees out, keeping mode, mtime, symlinks and sparse files
    paths   `SNAPSHOT:PARTITION:/path` specs as `agent ls` and `agent extract` take them
"""
