"""Settings from flags and AGENT_* environment variables (flags win). Secrets are read from files,
commands, the environment or a prompt; never from argv, and never logged."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from crypto.errors import UnsupportedSuite
from crypto.kdf import KdfParams
from agent.errors import UsageError


@dataclass
class Settings:
    repo: str | None = None
    passphrase_file: str | None = None
    passphrase_command: str | None = None
    json: bool = False
    debug: bool = False
    quiet: bool = False
    limit_upload: str | None = None
    limit_download: str | None = None
    config_path: str | None = None
    file: object | None = None  # agent.nightly.config.Config, when a config file was loaded

    @classmethod
    def resolve(cls, file=None, **flags) -> "Settings":
        """Flags win over AGENT_* variables, which win over the config file."""
        env = os.environ

        def pick(flag: str, var: str, from_file):
            return flags.get(flag) or env.get(var) or from_file or None

        return cls(
            repo=pick("repo", "AGENT_REPO", file and file.repository),
            passphrase_file=pick("passphrase_file", "AGENT_PASSPHRASE_FILE", file and file.passphrase_file),
            passphrase_command=pick("passphrase_command", "AGENT_PASSPHRASE_COMMAND",
                                    file and file.passphrase_command),
            json=bool(flags.get("json")),
            debug=bool(flags.get("debug")),
            quiet=bool(flags.get("quiet")),
            limit_upload=pick("limit_upload", "AGENT_LIMIT_UPLOAD", file and file.limits.upload),
            limit_download=pick("limit_download", "AGENT_LIMIT_DOWNLOAD", file and file.limits.download),
            config_path=flags.get("config_path"),
            file=file,
        )

    def require_repo(self) -> str:
        if not self.repo:
            raise UsageError("no repository given", hint="pass --repo or set AGENT_REPO")
        return self.repo


def read_secret_file(path: str, what: str) -> bytes:
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} file {p} does not exist") from None
    except PermissionError:
        raise UsageError(f"cannot read the {what} file {p}: permission denied") from None
    return data.rstrip(b"\r\n")


def run_secret_command(command: str, what: str) -> bytes:
    try:
        out = subprocess.run(shlex.split(command), capture_output=True, check=False, timeout=120)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"the {what} command could not run ({exc.__class__.__name__})") from None
    if out.returncode != 0:
        raise UsageError(f"the {what} command failed with exit status {out.returncode}")
    return out.stdout.rstrip(b"\r\n")


def passphrase_from_settings(s: Settings) -> bytes | None:
    """The passphrase from a configured source, or None when the caller should prompt."""
    if s.passphrase_file:
        secret = read_secret_file(s.passphrase_file, "passphrase")
    elif s.passphrase_command:
        secret = run_secret_command(s.passphrase_command, "passphrase")
    elif os.environ.get("AGENT_PASSPHRASE"):
        secret = os.environ["AGENT_PASSPHRASE"].encode()
    else:
        return None
    if not secret:
        raise UsageError("the configured passphrase is empty")
    return secret


def parse_percent(text: str, what: str, *, allow_zero: bool = True) -> float:
    """`5%` (or `5`) as the fraction 0.05; one reading for every option and config field that takes a share."""
    try:
        p = float(text.strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"{what} takes a percentage like 5%, not {text!r}") from None
    if not (0 <= p if allow_zero else 0 < p) or p > 100:
        raise UsageError(f"{what} must be between 0% and 100%, not {text!r}")
    return p / 100


def kdf_params() -> KdfParams:
    """Argon2id cost for new key files: AGENT_KDF='time,memory_kib,parallelism' raises (or, in tests,
    lowers) the default; out-of-range values are refused as they are in a key file."""
    spec = os.environ.get("AGENT_KDF")
    if not spec:
        return KdfParams()
    try:
        t, m, p = (int(x) for x in spec.split(","))
        return KdfParams.from_dict({"time_cost": t, "memory_kib": m, "parallelism": p, "algorithm": "argon2id"})
    except (ValueError, UnsupportedSuite):
        raise UsageError(f"AGENT_KDF must be 'time,memory_kib,parallelism' within 1-64 passes, 8 KiB-4 GiB and "
                         f"1-64 lanes (for example 3,65536,4), not {spec!r}") from None
