"""Sources: what a backup reads (and a restore reads of local images).

    device           open a block device or image file: size, identity, data extents (holes),
                     O_DIRECT reads with a cached fallback, mounts
    spans            a local image read in large spans (delta targets, seeds): from the page cache
                     when it holds them, else with O_DIRECT
    partitions       the partition table (GPT or MBR) with each partition's filesystem
    gpt, mbr         the two table formats
    filesystems      filesystem signatures (ext, FAT, NTFS, XFS, ...) inside a partition
    partition_model  the Partition and PartitionTable dataclasses
    bytefields       little-endian field readers shared by the table and filesystem parsers
"""
