"""Repository config: a plaintext part anyone can read (format version, repo id) and a sealed
part (chunker and pack parameters) only key holders can read."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field

from agent.errors import AgentError, CorruptObject, RepositoryNotFound, UnsupportedFormat
from crypto import aead
from crypto.errors import AuthenticationFailed, UnsupportedSuite

FORMAT_NAME = "agent-repository"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC parameters; the seed comes from the master key, never from here."""

    # 256 KiB on average: smaller than restic's 1 MiB, so a change rewrites less, and measured faster on
    # every night than 512 KiB (docs/benchmarks.md, sweep), at 49 bytes of index per chunk
    min_size: int = 64 << 10
    avg_size: int = 256 << 10
    max_size: int = 1 << 20

    def validate(self) -> ChunkerParams:
        if not (all(type(v) is int for v in (self.min_size, self.avg_size, self.max_size))
                and 64 <= self.min_size <= self.avg_size <= self.max_size <= 16 << 20):
            raise UnsupportedFormat("repository config has invalid chunker parameters")
        return self


@dataclass(frozen=True)
class RepoParams:
    chunker: ChunkerParams = field(default_factory=ChunkerParams)
    pack_size: int = 16 << 20
    compression: str = "zstd"
    compression_level: int = 2  # 1.4-1.7x faster than 3 on disk images, same size (docs/benchmarks.md)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RepoParams:
        params = cls(
            chunker=ChunkerParams(**d["chunker"]).validate(),
            pack_size=int(d["pack_size"]),
            compression=str(d.get("compression", "zstd")),
            compression_level=int(d.get("compression_level", 3)),
        )
        # zstd refuses levels above 22 (a backup would fail at its first blob); packs hold at least one blob
        if not (-(1 << 17) <= params.compression_level <= 22 and params.pack_size > 0):
            raise UnsupportedFormat("repository config has an invalid compression level or pack size")
        return params


def _config_ad(repo_id: str) -> bytes:
    return b"agent config v1\x00" + repo_id.encode()


def encode_config(repo_id: str, params: RepoParams, encryption_key: bytes, created: str) -> bytes:
    sealed = aead.seal(encryption_key, json.dumps(params.to_dict()).encode(), _config_ad(repo_id))
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "id": repo_id,
        "created": created,
        "sealed": base64.b64encode(sealed).decode(),
    }
    return json.dumps(doc, indent=1).encode()


def read_plain_config(raw: bytes) -> dict:
    """The readable part; refuses what is not a repository or is of a newer format."""
    try:
        doc = json.loads(raw)
        name, version, repo_id = doc["format"], int(doc["version"]), doc["id"]
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):  # Infinity; nesting past the stack
        raise _unreadable(raw) from None
    if name != FORMAT_NAME or not isinstance(repo_id, str):
        raise _unreadable(raw)
    if version > FORMAT_VERSION:
        raise UnsupportedFormat(
            f"repository format version {version} is newer than this agent supports ({FORMAT_VERSION}); "
            "upgrade agent to use it"
        )
    if version < 1 or len(repo_id) != 32:
        raise UnsupportedFormat(f"repository format version {version} is not supported")
    if any(c not in "0123456789abcdef" for c in repo_id):  # it names the cache directory and binds every object
        raise _unreadable(raw)
    return doc


def _unreadable(raw: bytes) -> AgentError:
    """A `config` that names this format but does not parse is damaged; anything else is not ours.
    Either way the hint must not send the user to `agent init`."""
    if FORMAT_NAME.encode() in raw:
        return CorruptObject("the repository config is damaged: it names an agent repository but cannot be read",
                             hint="restore the object 'config' from a copy of this repository (it never changes "
                                  "after `agent init`); the packs, index and snapshots are untouched")
    return RepositoryNotFound("the object named 'config' is not an agent repository config",
                              hint="check --repo / AGENT_REPO: this location holds something else")


def open_config(doc: dict, encryption_key: bytes) -> RepoParams:
    try:
        raw = aead.open_(encryption_key, base64.b64decode(doc["sealed"]), _config_ad(doc["id"]))
        return RepoParams.from_dict(json.loads(raw))
    except (AuthenticationFailed, UnsupportedSuite, ValueError, KeyError, TypeError, OverflowError, RecursionError):
        raise CorruptObject("the repository config failed authentication: it was modified or damaged") from None
