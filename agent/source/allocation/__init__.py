"""Free space of the filesystems on a disk, from their own allocation structures, so a backup reads
and stores only the blocks in use (docs/backup.md, "Used blocks only").

One module per filesystem, each with `free_space(read, size) -> Allocation` raising ReadWhole when
it cannot vouch for its answer; `model` holds those two, `bits` turns bitmaps into byte ranges.
"""
