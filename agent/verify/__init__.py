"""Verify: would this snapshot restore, and would its filesystems mount? (`agent verify`)

    chunks    read every chunk of a snapshot as a restore does (restore.fetch), keep nothing, and
              list the image ranges that fail
    checkers  each filesystem's own read-only checker (e2fsck -fn, fsck.fat -n, ...) and what its
              exit status means
    expose    a partition as a file a checker can open: through a private FUSE mount of the
              snapshot (browse.mount), else restored into a sparse temporary file
    run       the two together, one result per partition
    result    VerifyResult and PartitionCheck, what the CLI and the nightly report render

It sits above the stages because it composes two of them (restore's reads, browse's image).
"""
