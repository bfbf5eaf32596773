"""Passphrase -> key-wrapping key with Argon2id (memory-hard, so offline guessing is costly).

A key file names its own cost, and whoever can write to the storage can write a key file, so the
cost is bounded before any work: a hostile key file must not make a nightly job run for hours or
swap the machine to death (docs/security.md). New key files are held to the same bounds, so every
key file this agent writes opens again on the machine that wrote it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from argon2.low_level import Type, hash_secret_raw

from crypto.errors import UnsupportedSuite

MAX_TIME_COST = 16
MAX_PARALLELISM = 16
MAX_MEMORY_KIB = 4 * 1024 * 1024  # 4 GiB, and never more than half the machine's memory (max_memory_kib)
MIN_SALT = 8  # bytes: Argon2's own minimum; agent writes 16


def max_memory_kib(physical_bytes: int | None = None) -> int:
    """min(4 GiB, half the physical memory): more would push a server into swap or the OOM killer."""
    if physical_bytes is None:
        try:
            physical_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            physical_bytes = 0
    if physical_bytes <= 0:
        return MAX_MEMORY_KIB
    return min(MAX_MEMORY_KIB, physical_bytes // 2 // 1024)


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. Default: 32 MiB (restic's scrypt memory) with 6 passes, so unlocking takes as
    long as RFC 9106's 64 MiB/t=3 but every command's peak memory is 32 MiB lower (docs/security.md).
    Values outside the bounds raise UnsupportedSuite, whether read from a key file or asked for."""

    time_cost: int = 6
    memory_kib: int = 32 * 1024
    parallelism: int = 4
    algorithm: str = "argon2id"

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.time_cost <= MAX_TIME_COST:
            problems.append(f"{self.time_cost} passes (at most {MAX_TIME_COST})")
        if not 1 <= self.parallelism <= MAX_PARALLELISM:
            problems.append(f"{self.parallelism} lanes (at most {MAX_PARALLELISM})")
        limit = max_memory_kib()
        if self.memory_kib > limit:
            problems.append(f"{self.memory_kib} KiB of memory (at most {limit} KiB: 4 GiB, or half this machine's "
                            "memory if less)")
        elif self.memory_kib < 8 * max(1, self.parallelism):
            problems.append(f"{self.memory_kib} KiB of memory for {self.parallelism} lanes (Argon2id needs "
                            "at least 8 KiB per lane)")
        if problems:
            raise UnsupportedSuite(f"the key file asks for Argon2id with {', '.join(problems)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> KdfParams:
        if d.get("algorithm") != "argon2id":
            raise UnsupportedSuite(f"unknown key derivation function {d.get('algorithm')!r}")
        return cls(int(d["time_cost"]), int(d["memory_kib"]), int(d["parallelism"]))


#: for tests only: fast and weak
TEST_PARAMS = KdfParams(time_cost=1, memory_kib=8, parallelism=1)


def derive(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    if len(salt) < MIN_SALT:
        raise UnsupportedSuite(f"the key file has a salt of {len(salt)} bytes (at least {MIN_SALT} are needed)")
    return hash_secret_raw(passphrase, salt, params.time_cost, params.memory_kib, params.parallelism, 32, Type.ID)
