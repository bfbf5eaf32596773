"""`agent copy`: snapshots from one repository into another, without reading a disk or cutting again.

- options: what a copy is asked to do (CopyOptions) and what it reports (CopyResult);
- select: which source snapshots, and which the target already holds;
- fetch: ranged reads of the source's packs, coalesced and a few in flight, each blob checked;
- idmap: the target's id of each source chunk, from snapshots copied earlier (different keys);
- run: locks both repositories, moves what the target lacks through agent.repo.writer, saves manifests.
"""
