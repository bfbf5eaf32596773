"""The storage probe behind `agent doctor`: a safe live check of a storage target before it is
trusted with backups.

Credentials, permissions, the storage contract and speed are each found out by doing it: the
probe writes, reads (whole and ranged), lists and deletes objects of its own, under `doctor/`
with a random name, so it can run beside a live repository (it never touches repository
objects) and needs no passphrase. It talks to the backend without the retry layer, so a
problem shows at once instead of after minutes of backoff. Filesystem-like targets keep an
empty `doctor/` directory afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.config import units
from agent.errors import AgentError
from agent.repo import layout
from agent.repo.format import read_plain_config
from backends import errors
from backends.base import Backend, PutMode
from backends.errors import AlreadyExists, BackendError, InvalidRange, NotFound
from backends.registry import BackendUnavailable, open_backend, redact_url

PREFIX = "doctor/"
SMALL = 64 << 10
RANGE = (1000, 4096)  # offset, length of the ranged read
LATENCY_ROUNDS = 5


class _ContractBroken(Exception):
    """The target answered, but not as the storage contract requires (other bytes, no refusal)."""


@dataclass
class Check:
    name: str
    status: str  # "ok" | "failed" | "skipped"
    detail: str
    seconds: float = 0.0
    hint: str = ""


@dataclass
class Report:
    url: str
    location: str | None = None
    capabilities: dict | None = None
    repository: dict | None = None
    latency_ms: dict | None = None
    throughput: dict | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if c.status == "failed"), None)

    def to_dict(self) -> dict[str, Any]:
        failed = self.failed
        return {"url": self.url, "location": self.location, "capabilities": self.capabilities,
                "repository": self.repository, "latency_ms": self.latency_ms, "throughput": self.throughput,
                "checks": [dataclasses.asdict(c) for c in self.checks], "ok": failed is None,
                "failed": failed.name if failed else None, "error": failed.detail if failed else None,
                "hint": failed.hint if failed else None}


def _hint(exc: Exception) -> str:
    """What to look at first, by kind of failure."""
    if isinstance(exc, BackendUnavailable):
        return "install the missing package as shown, then run `agent doctor` again"
    if isinstance(exc, errors.AuthError):
        return ("check the credentials: AWS_* or the profile for s3://, Application Default Credentials for gs://, "
                "the key and known_hosts for sftp://, AGENT_SMB_PASSWORD for smb:// (docs/backends.md)")
    if isinstance(exc, errors.PermissionDenied):
        return ("the credentials work but lack a permission: agent needs get, put, list and delete under the "
                "repository path (docs/backends.md, least privileges)")
    if isinstance(exc, errors.QuotaExceeded):
        return "free space or raise the quota"
    if isinstance(exc, errors.TransientError):
        return "the target is unreachable or overloaded: check the network, the endpoint and the provider's status"
    if isinstance(exc, errors.Unsupported):
        return "this target lacks a feature agent needs; see docs/backends.md"
    return "check the URL: scheme, host, bucket or share, and path (docs/backends.md)"


class Probe:
    """Runs named checks in order against `backend`, recording each; stops at the first failure."""

    def __init__(self, backend: Backend, report: Report) -> None:
        self.backend = backend
        self.report = report
        self.base = f"{PREFIX}{secrets.token_hex(8)}"
        self.created: dict[str, int] = {}  # probe key -> size, for the listing check and cleanup

    def step(self, name: str, fn: Callable[[], str]) -> None:
        if self.report.failed is not None:
            self.report.checks.append(Check(name, "skipped", "not run: an earlier check failed"))
            return
        started = time.perf_counter()
        try:
            detail, status, hint = fn(), "ok", ""
        except (BackendError, _ContractBroken) as exc:
            detail, status = str(exc) or type(exc).__name__, "failed"
            hint = ("the target does not keep the storage contract: do not use it for backups"
                    if isinstance(exc, _ContractBroken) else _hint(exc))
        self.report.checks.append(Check(name, status, detail, round(time.perf_counter() - started, 4), hint))

    def skip(self, name: str, why: str) -> None:
        self.report.checks.append(Check(name, "skipped", why))

    def put(self, suffix: str, data: bytes, **kwargs) -> str:
        key = f"{self.base}-{suffix}"
        self.created[key] = len(data)  # before the call: a put that failed late may still have landed
        self.backend.put(key, data, **kwargs)
        return key

    def cleanup(self) -> None:
        """Best effort after a failure; the `delete` check proper reports errors."""
        for key in list(self.created):
            try:
                self.backend.delete(key)
            except BackendError:
                pass


def _repository(backend: Backend) -> tuple[str, dict]:
    """Whether `config` holds an agent repository, from its plaintext part (no passphrase needed)."""
    try:
        raw = backend.get(layout.CONFIG)
    except NotFound:
        return "none here yet; `agent init` creates one", {"exists": False}
    try:
        doc = read_plain_config(raw)
    except AgentError as exc:
        return f"an object named 'config' is here, but: {exc}", {"exists": False, "problem": str(exc)}
    return (f"repository {doc['id'][:8]} (format {doc['version']})",
            {"exists": True, "id": doc["id"], "version": doc["version"]})


def run_probe(backend: Backend, report: Report, size: int) -> None:
    """The checks, in an order where each relies only on those before it."""
    probe = Probe(backend, report)
    caps = backend.capabilities
    small = os.urandom(SMALL)
    keys: dict[str, str] = {}

    def repository() -> str:
        detail, report.repository = _repository(backend)
        return detail

    def write() -> str:
        keys["small"] = probe.put("small", small)
        return f"{units.size(SMALL)} stored as {keys['small']}"

    def read() -> str:
        if backend.get(keys["small"]) != small:
            raise _ContractBroken("read back different bytes than were written")
        return f"{units.size(SMALL)} read back intact"

    def ranged() -> str:
        offset, length = RANGE
        if backend.get(keys["small"], offset=offset, length=length) != small[offset:offset + length]:
            raise _ContractBroken(f"a ranged read of {length} bytes at {offset} returned other bytes")
        try:
            backend.get(keys["small"], offset=SMALL - 10, length=20)
        except InvalidRange:
            return f"{length} bytes at offset {offset} intact; a range past the end is refused"
        raise _ContractBroken("a range past the end of the object was not refused")

    def listing() -> str:
        found = {i.key: i.size for i in backend.list(probe.base)}
        if found != probe.created:
            raise _ContractBroken(f"listing {probe.base} showed {sorted(found)}, expected {sorted(probe.created)}")
        return f"{len(found)} probe object(s) listed with their sizes"

    def create() -> str:
        key = probe.put("create", b"first", mode=PutMode.CREATE)
        try:
            backend.put(key, b"second", mode=PutMode.CREATE)
        except AlreadyExists:
            if backend.get(key) != b"first":
                raise _ContractBroken("a refused CREATE changed the object") from None
            return "a second CREATE of the same key is refused (AlreadyExists)"
        raise _ContractBroken("a second CREATE of the same key succeeded: two writers could overwrite each other")

    def latency() -> str:
        rounds = []
        for _ in range(LATENCY_ROUNDS):
            started = time.perf_counter()
            backend.head(keys["small"])
            rounds.append((time.perf_counter() - started) * 1000)
        report.latency_ms = {"median": round(statistics.median(rounds), 2), "min": round(min(rounds), 2),
                             "max": round(max(rounds), 2), "rounds": LATENCY_ROUNDS}
        return f"median {report.latency_ms['median']:.1f} ms over {LATENCY_ROUNDS} round trips (head)"

    def throughput() -> str:
        bulk = os.urandom(size)
        started = time.perf_counter()
        key = probe.put("bulk", bulk)
        up = time.perf_counter() - started
        started = time.perf_counter()
        same = backend.get(key) == bulk
        down = time.perf_counter() - started
        if not same:
            raise _ContractBroken(f"{units.size(size)} read back different bytes than were written")
        report.throughput = {"bytes": size, "upload_s": round(up, 4), "download_s": round(down, 4),
                             "upload_bytes_per_s": round(size / up) if up else None,
                             "download_bytes_per_s": round(size / down) if down else None}
        return f"{units.size(size)}: upload {units.rate(size, up)}, download {units.rate(size, down)}"

    def delete() -> str:
        for key in list(probe.created):
            backend.delete(key)
            try:
                backend.head(key)
            except NotFound:
                del probe.created[key]
                continue
            raise _ContractBroken(f"{key} is still there after delete")
        if list(backend.list(probe.base)):
            raise _ContractBroken(f"deleted probe objects still listed under {probe.base}")
        return "every probe object deleted"

    try:
        probe.step("repository", repository)
        probe.step("write", write)
        probe.step("read", read)
        if caps.range_reads:
            probe.step("range read", ranged)
        else:
            probe.skip("range read", "the backend declares no range reads")
        probe.step("list", listing)
        if caps.conditional_put:
            probe.step("create", create)
        else:
            probe.skip("create", "the backend declares no conditional put (CREATE)")
        probe.step("latency", latency)
        probe.step("throughput", throughput)
        probe.step("delete", delete)
    finally:
        probe.cleanup()


def probe_storage(url: str, size: int) -> Report:
    """Open the storage at `url` (no retry layer) and run every check; the report says what failed."""
    report = Report(url=redact_url(url))
    try:
        backend = open_backend(url)
    except BackendError as exc:
        report.checks.append(Check("open", "failed", str(exc), hint=_hint(exc)))
        return report
    report.location = backend.location
    report.capabilities = dataclasses.asdict(backend.capabilities)
    try:
        run_probe(backend, report, size)
    finally:
        backend.close()
    return report
