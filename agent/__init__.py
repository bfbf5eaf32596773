"""agent: deduplicating, encrypted disk-image backup with point-in-time restore.

The packages, top to bottom; each imports only from those below it (checked by import-linter,
contracts in pyproject.toml; docs/architecture.md draws the data flow):

    agent.cli           one module per command; the only code that prints, prompts or picks exit codes
    agent.nightly       `agent run`: agent.toml, sources in turn, hooks, retention, notifications,
                        metrics, state, and the systemd/cron schedule
    agent.backup        a disk or image -> chunks -> the repository's writer -> a snapshot
    agent.restore       a snapshot (or one partition of it) -> an image file or a block device
    agent.browse        a snapshot's partitions and files, read in place: `agent ls`, `agent extract`
    agent.maintenance   forget, prune, check, repair, stats: the only code that deletes from a repository
    agent.repo          the on-storage format: keys, envelope, packs, index, chunk lists, snapshots,
                        locks, the write path, and the one translation of storage errors
    agent.source        devices and image files, their data extents, partition tables, filesystems
    agent.config        settings (flags < env < file), AGENT_* names, units, times, bandwidth specs
    agent.errors, agent.progress, agent.allocator
                        the error tree, progress events, and malloc tuning, used by every layer

Beside the agent, not inside it: `backends` (opaque bytes under opaque keys, imports nothing of
the agent) and `crypto` (keys, KDF, AEAD, keyed ids; pure). Only agent.repo imports them.
"""

__version__ = "0.1.0"
