"""The repository: the only code that knows the on-storage format (docs/format.md), and the only
part of the agent that imports `backends` and `crypto`.

    repository  Repository: the engine's one handle; it never hands out keys, envelope or backend
    storage     opening the storage (middleware, bandwidth limits) and translating its errors
    keyring     key files: create, unlock, KDF parameters
    format      the repository config and its parameters
    layout      the only place that builds storage keys
    envelope    chunk <-> sealed blob (zstd, then AEAD bound to repository, type and id)
    chunker     the keyed FastCDC cutter
    packs       pack builder and header codec
    index       chunk id -> pack location, 49 bytes per chunk in memory
    chunklist   chunk-list records, groups and their codec
    writer      the write path: dedup set, sealing pool, packs, uploads, index checkpoints
    snapshots   snapshot manifests, filters and point-in-time lookup
    runs        records of runs that ended without a snapshot
    damage      records of damage check proved, so backups stop deduplicating against it
    acks        acknowledgements of suspicious nights, which end the protection of the snapshot before
    locks       shared and exclusive locks with refresh and staleness
    cache       local cache of index segments and manifests (always rebuildable)
    probe       `agent doctor`'s live check of a storage target
"""
