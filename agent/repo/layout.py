"""The only place that builds storage keys. Names are random or hashes of ciphertext: never content."""

from __future__ import annotations

CONFIG = "config"
KEYS = "keys/"
DATA = "data/"
INDEX = "index/"
SNAPSHOTS = "snapshots/"
LOCKS = "locks/"
RUNS = "runs/"
DAMAGE = "damage/"
ACKS = "acks/"
RETENTION = "retention/"  # written by maintenance only: the backup principal may not (terraform/)


def key_file(key_id: str) -> str:
    return f"{KEYS}{key_id}"


def pack(pack_id: str) -> str:
    return f"{DATA}{pack_id[:2]}/{pack_id}"


def index_segment(segment_id: str) -> str:
    return f"{INDEX}{segment_id}"


def snapshot(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}"


def run(run_id: str) -> str:
    return f"{RUNS}{run_id}"


def damage(record_id: str) -> str:
    return f"{DAMAGE}{record_id}"


def ack(ack_id: str) -> str:
    return f"{ACKS}{ack_id}"


def retention(record_id: str) -> str:
    return f"{RETENTION}{record_id}"


def lock(lock_id: str) -> str:
    return f"{LOCKS}{lock_id}"


def name_of(key: str) -> str:
    """The id part of a key (its last path element)."""
    return key.rsplit("/", 1)[-1]
