"""Maintenance: the only code that deletes from a repository, and the checks that tell whether
what is left can be restored.

    forget     a retention policy decides which snapshots go; their manifests are removed
    retention  the policy (keep-last/hourly/daily/weekly/monthly/yearly/within) and its decisions
    protection what forget keeps for unacknowledged suspicious nights, and `agent ack`
    prune      delete unused packs, repack partly used ones, supersede the index (crash-safe order)
    usage      which indexed chunks live snapshots use (shared by prune and stats)
    check      structure always; with --read-data, authenticate every blob and name the snapshots
               and image ranges a damaged pack affects; records what it proved damaged
    stats      stored versus logical size and dedup, per host and source
    repair_index      rebuild the index from pack headers (damaged or lost segments, missing packs)
    repair_packs      salvage readable blobs of damaged packs into new ones, drop the rest
    repair_snapshots  mark snapshots with lost chunks, or replace them with lost ranges as zeros
    repair_report     what a repair did or, dry run, would do
"""
