"""A repository's keys: create them with the config (init), or find the key file a passphrase
opens and unwrap it.

Kept apart from agent.repo.repository, and light on imports (no numpy, zstd or chunker), so the
CLI runs Argon2id before it loads the engine: the KDF's 64 MiB then add to a 43 MB process
instead of a 50 MB one, which decides the peak memory of init and of an incremental backup.
"""

from __future__ import annotations

import getpass
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.errors import (
    CorruptObject,
    RepositoryExists,
    RepositoryNotFound,
    UnsupportedFormat,
    UsageError,
    WrongPassphrase,
)
from agent.repo import layout
from agent.repo.format import RepoParams, encode_config, read_plain_config
from agent.repo.storage import storage_error, translated
from backends.base import Backend, PutMode
from backends.errors import AlreadyExists, BackendError, NotFound
from crypto import keys as keyfiles
from crypto.errors import KeyNotUnwrapped, UnsupportedSuite
from crypto.kdf import KdfParams
from crypto.keys import MasterKey


@dataclass(frozen=True)
class Unlocked:
    config: dict  # the plaintext part of the repository config
    master: MasterKey
    key_id: str

    def __repr__(self) -> str:  # never print key material, even in a traceback
        return f"Unlocked(repository {self.config.get('id')}, key {self.key_id[:8]})"


def unlock(backend: Backend, passphrase: bytes) -> Unlocked:
    try:
        raw = backend.get(layout.CONFIG)
    except NotFound:
        raise RepositoryNotFound(f"no repository at {backend.location}") from None
    except BackendError as exc:
        raise storage_error(exc, f"cannot read the repository at {backend.location}") from None
    config = read_plain_config(raw)
    try:
        infos = list(backend.list(layout.KEYS))
    except BackendError as exc:
        raise storage_error(exc, "cannot list the repository keys") from None
    if not infos:
        raise CorruptObject("the repository has no key files; it cannot be opened")
    unreadable: list[str] = []  # malformed or stray files in keys/: one must not lock out the others
    for info in infos:
        key_id = layout.name_of(info.key)
        try:
            return Unlocked(config, keyfiles.unwrap(backend.get(info.key), passphrase, config["id"]), key_id)
        except KeyNotUnwrapped:
            continue
        except UnsupportedSuite as exc:
            unreadable.append(f"{key_id[:8]} ({exc})")
        except NotFound:
            continue  # removed while we listed (`agent key remove` elsewhere)
        except BackendError as exc:
            raise storage_error(exc, f"cannot read key file {key_id[:8]}") from None
    if unreadable and len(unreadable) == len(infos):
        raise UnsupportedFormat(f"no key file of this repository can be read: {', '.join(unreadable)}",
                                hint="the key files are damaged or from a newer agent; restore keys/ from a copy")
    if unreadable:
        raise WrongPassphrase(f"wrong passphrase: no readable key of this repository opens with it (and "
                              f"{len(unreadable)} key file(s) cannot be read: {', '.join(unreadable)})")
    raise WrongPassphrase("wrong passphrase: no key of this repository opens with it")


def create(backend: Backend, passphrase: bytes, params: RepoParams, kdf: KdfParams) -> Unlocked:
    """Write a new repository's key file and config (`agent init`)."""
    try:
        backend.head(layout.CONFIG)
        raise RepositoryExists(f"a repository already exists at {backend.location}")
    except NotFound:
        pass
    except BackendError as exc:
        raise storage_error(exc, f"cannot reach {backend.location}") from None
    master = MasterKey.generate()
    repo_id = secrets.token_hex(16)
    created = datetime.now(UTC).isoformat()
    key_id = secrets.token_hex(16)
    keyfile = keyfiles.wrap(master, passphrase, repo_id, kdf, key_meta("initial key"))
    try:
        # the key first, the config last: a half-initialised repository has no config and is not one
        backend.put(layout.key_file(key_id), keyfile, mode=PutMode.CREATE)
        backend.put(layout.CONFIG, encode_config(repo_id, params, master.encryption_key, created),
                    mode=PutMode.CREATE)
    except AlreadyExists:
        raise RepositoryExists(f"a repository already exists at {backend.location}") from None
    except BackendError as exc:
        raise storage_error(exc, f"cannot create the repository at {backend.location}") from None
    with translated(f"cannot read back the new repository at {backend.location}"):
        return Unlocked(read_plain_config(backend.get(layout.CONFIG)), master, key_id)


def key_meta(label: str) -> dict:
    """What `agent key list` shows about a key: when, where and by whom it was made."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return {"created": datetime.now(UTC).isoformat(), "host": socket.gethostname(), "user": user,
            "label": label}


def kdf_params(spec: str | None) -> KdfParams:
    """Argon2id cost for new key files: 'time,memory_kib,parallelism' (AGENT_KDF) raises (or, in
    tests, lowers) the default; out-of-range values are refused as they are in a key file."""
    if not spec:
        return KdfParams()
    try:
        t, m, p = (int(x) for x in spec.split(","))
        return KdfParams.from_dict({"time_cost": t, "memory_kib": m, "parallelism": p, "algorithm": "argon2id"})
    except (ValueError, UnsupportedSuite):
        raise UsageError(f"AGENT_KDF must be 'time,memory_kib,parallelism' within 1-64 passes, 8 KiB-4 GiB "
                         f"(8 KiB a lane) and 1-64 lanes (for example 3,65536,4), not {spec!r}") from None
