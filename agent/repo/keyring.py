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
from crypto.errors import KeyFileDamaged, KeyNotUnwrapped, UnsupportedSuite
from crypto.kdf import MAX_PARALLELISM, MAX_TIME_COST, KdfParams, max_memory_kib
from crypto.keys import MasterKey


@dataclass(frozen=True)
class Unlocked:
    config: dict  # the plaintext part of the repository config
    master: MasterKey
    key_id: str
    damaged: tuple[str, ...] = ()  # ids of key files tried before this one that failed their digest

    def __repr__(self) -> str:  # never print key material, even in a traceback
        return f"Unlocked(repository {self.config.get('id')}, key {self.key_id[:8]})"


_RESTORE_CONFIG = ("restore the object 'config' from a copy of this repository (it never changes after "
                   "`agent init`); the packs, index and snapshots are untouched. Do not run `agent init` here")


def _has_key_files(backend: Backend) -> bool:
    """Whether `keys/` holds anything: the mark of a repository whose config is damaged or gone."""
    try:
        return any(True for _ in backend.list(layout.KEYS))
    except BackendError:
        return False


def unlock(backend: Backend, passphrase: bytes) -> Unlocked:
    try:
        raw = backend.get(layout.CONFIG)
    except NotFound:
        if _has_key_files(backend):
            raise CorruptObject("the repository config is missing: key files are here, but the object 'config' "
                                "is gone", hint=_RESTORE_CONFIG) from None
        raise RepositoryNotFound(f"no repository at {backend.location}") from None
    except BackendError as exc:
        raise storage_error(exc, f"cannot read the repository at {backend.location}") from None
    try:
        config = read_plain_config(raw)
    except RepositoryNotFound:  # not ours, unless key files sit beside it: then it is ours, damaged
        if _has_key_files(backend):
            raise CorruptObject("the repository config is damaged (unreadable), and key files are here",
                                hint=_RESTORE_CONFIG) from None
        raise
    try:
        infos = list(backend.list(layout.KEYS))
    except BackendError as exc:
        raise storage_error(exc, "cannot list the repository keys") from None
    if not infos:
        raise CorruptObject("the repository has no key files; it cannot be opened")
    unreadable: list[str] = []  # malformed or stray files in keys/: one must not lock out the others
    damaged: list[str] = []  # failed their integrity digest: maybe this passphrase's own key file
    for info in infos:
        key_id = layout.name_of(info.key)
        try:
            return Unlocked(config, keyfiles.unwrap(backend.get(info.key), passphrase, config["id"]), key_id,
                            tuple(damaged))
        except KeyNotUnwrapped:
            continue
        except KeyFileDamaged:
            damaged.append(key_id)
        except UnsupportedSuite as exc:
            unreadable.append(f"{key_id[:8]}: {exc}")
        except NotFound:
            continue  # removed while we listed (`agent key remove` elsewhere)
        except BackendError as exc:
            raise storage_error(exc, f"cannot read key file {key_id[:8]}") from None
    if damaged:
        names = ", ".join(k[:8] for k in damaged)
        what = f"key file {names} is" if len(damaged) == 1 else f"key files {names} are"
        also = f" ({len(unreadable)} more cannot be read: {'; '.join(unreadable)})" if unreadable else ""
        raise CorruptObject(f"{what} damaged (the integrity digest does not match) and no other key file opens "
                            f"with this passphrase{also}",
                            hint=f"open the repository with another key's passphrase, or restore keys/{damaged[0]} "
                                 "from a copy of the repository")
    if unreadable and len(unreadable) == len(infos):
        raise UnsupportedFormat(f"no key file of this repository can be read: {'; '.join(unreadable)}",
                                hint="the key files are damaged or from a newer agent; restore keys/ from a copy")
    if unreadable:
        raise WrongPassphrase(f"wrong passphrase: no readable key of this repository opens with it (and "
                              f"{len(unreadable)} key file(s) cannot be read: {'; '.join(unreadable)})")
    raise WrongPassphrase("wrong passphrase: no key of this repository opens with it")


def damaged_keys(backend: Backend) -> list[tuple[str, str]]:
    """(key id, problem) of every key file that fails its integrity digest or is no key file (`agent check`)."""
    out = []
    with translated("cannot read the repository keys"):
        for info in backend.list(layout.KEYS):
            try:
                keyfiles.verify(backend.get(info.key))
            except NotFound:
                continue
            except (KeyFileDamaged, UnsupportedSuite) as exc:
                out.append((layout.name_of(info.key), str(exc)))
    return out


def create(backend: Backend, passphrase: bytes, params: RepoParams, kdf: KdfParams, *,
           master: MasterKey | None = None, repo_id: str | None = None) -> Unlocked:
    """Write a new repository's key file and config (`agent init`). `master` and `repo_id` are
    given only by `Repository.init_from` (a copy target that shares a source's keys or seed)."""
    try:
        backend.head(layout.CONFIG)
        raise RepositoryExists(f"a repository already exists at {backend.location}")
    except NotFound:
        pass
    except BackendError as exc:
        raise storage_error(exc, f"cannot reach {backend.location}") from None
    try:  # packs or snapshots without a config: a repository that lost it, not a half-made one
        held = any(True for prefix in (layout.SNAPSHOTS, layout.INDEX, layout.DATA) for _ in backend.list(prefix))
    except BackendError as exc:
        raise storage_error(exc, f"cannot reach {backend.location}") from None
    if held:
        raise RepositoryExists(f"{backend.location} holds repository data but no config: a new repository here "
                               "would leave that data unreadable", hint=_RESTORE_CONFIG)
    master = master or MasterKey.generate()
    repo_id = repo_id or secrets.token_hex(16)
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
    tests, lowers) the default; values past the bounds a key file is held to are refused
    (crypto.kdf), so no key file is written that this machine would refuse to open."""
    if not spec:
        return KdfParams()
    try:
        t, m, p = (int(x) for x in spec.split(","))
        return KdfParams.from_dict({"time_cost": t, "memory_kib": m, "parallelism": p, "algorithm": "argon2id"})
    except ValueError:
        problem = "it is not three whole numbers"
    except UnsupportedSuite as exc:
        problem = str(exc).replace("the key file asks", "it asks")
    raise UsageError(f"AGENT_KDF must be 'time,memory_kib,parallelism' within 1-{MAX_TIME_COST} passes, "
                     f"8 KiB per lane to {max_memory_kib()} KiB (4 GiB, or half this machine's memory) and "
                     f"1-{MAX_PARALLELISM} lanes, for example 3,65536,4; {spec!r}: {problem}")
