"""Passphrase -> key-wrapping key with Argon2id (memory-hard, so offline guessing is costly)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from argon2.low_level import Type, hash_secret_raw

from crypto.errors import UnsupportedSuite


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. Default: 32 MiB (restic's scrypt memory) with 6 passes, so unlocking takes as
    long as RFC 9106's 64 MiB/t=3 but every command's peak memory is 32 MiB lower (docs/security.md)."""

    time_cost: int = 6
    memory_kib: int = 32 * 1024
    parallelism: int = 4
    algorithm: str = "argon2id"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> KdfParams:
        if d.get("algorithm") != "argon2id":
            raise UnsupportedSuite(f"unknown key derivation function {d.get('algorithm')!r}")
        params = cls(int(d["time_cost"]), int(d["memory_kib"]), int(d["parallelism"]))
        # bound the cost an attacker-supplied key file can make us spend
        # (Argon2 also needs 8 KiB per lane: memory_kib >= 8 * parallelism)
        if not (1 <= params.time_cost <= 64 and 8 <= params.memory_kib <= 4 * 1024 * 1024
                and 1 <= params.parallelism <= 64 and params.memory_kib >= 8 * params.parallelism):
            raise UnsupportedSuite("key file asks for out-of-range Argon2id parameters")
        return params


#: for tests only: fast and weak
TEST_PARAMS = KdfParams(time_cost=1, memory_kib=8, parallelism=1)


def derive(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    return hash_secret_raw(passphrase, salt, params.time_cost, params.memory_kib, params.parallelism, 32, Type.ID)
