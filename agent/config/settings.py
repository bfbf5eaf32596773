"""Settings from flags, AGENT_* environment variables and the config file. Secrets are read from files,
commands, the environment or a prompt; never from argv, and never logged.

Precedence (docs/configuration.md#precedence): flags > a config file named with --config >
AGENT_* variables > a config file found by AGENT_CONFIG or in a default location > defaults. A file
named on the command line is the most recent, deliberate choice; a variable left in a shell must not
silently pair its repository with that file's passphrase."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.config import env
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
    #: (which won: "file" or "environment", AGENT_REPO's value, the file's) when the two name different repositories
    repo_conflict: tuple[str, str, str] | None = None

    @classmethod
    def resolve(cls, file=None, *, file_named: bool = False, **flags) -> Settings:
        """Flags win; then the config file when it was named with --config (`file_named`), else the
        AGENT_* variables before the file."""
        def pick(flag: str, var: str, from_file):
            if file_named:
                return flags.get(flag) or from_file or os.environ.get(var) or None
            return flags.get(flag) or os.environ.get(var) or from_file or None

        from_env, from_file = os.environ.get(env.REPO), file and file.repository
        conflict = None
        if not flags.get("repo") and from_env and from_file and from_env != from_file:
            conflict = ("file" if file_named else "environment", from_env, from_file)
        return cls(
            repo=pick("repo", env.REPO, file and file.repository),
            passphrase_file=pick("passphrase_file", env.PASSPHRASE_FILE, file and file.passphrase_file),
            passphrase_command=pick("passphrase_command", env.PASSPHRASE_COMMAND,
                                    file and file.passphrase_command),
            json=bool(flags.get("json")),
            debug=bool(flags.get("debug")),
            quiet=bool(flags.get("quiet")),
            limit_upload=pick("limit_upload", env.LIMIT_UPLOAD, file and file.limits.upload),
            limit_download=pick("limit_download", env.LIMIT_DOWNLOAD, file and file.limits.download),
            config_path=flags.get("config_path"),
            file=file,
            repo_conflict=conflict,
        )

    def require_repo(self) -> str:
        if not self.repo:
            raise UsageError("no repository given", hint="pass --repo or set AGENT_REPO")
        return self.repo


def read_user_file(path: str | Path, what: str, *, missing_hint: str | None = None) -> bytes:
    """A file the user named (passphrase, config): every way it can fail is a UsageError naming it."""
    p = Path(path).expanduser()
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} file {p} does not exist", hint=missing_hint) from None
    except PermissionError:
        raise UsageError(f"cannot read the {what} file {p}: permission denied") from None
    except IsADirectoryError:
        raise UsageError(f"the {what} file {p} is a directory; give the path of the file in it") from None
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {p}: {exc.strerror}") from None


def read_secret_file(path: str, what: str) -> bytes:
    return read_user_file(path, what).rstrip(b"\r\n")


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
    return passphrase_from(s.passphrase_file, s.passphrase_command, env.PASSPHRASE, "passphrase")


def passphrase_from(file: str | None, command: str | None, variable: str, what: str) -> bytes | None:
    """A passphrase from a file, else a command, else the variable `variable`; None: prompt.
    `what` names it in errors ("target passphrase"), never its value."""
    if file:
        secret = read_secret_file(file, what)
    elif command:
        secret = run_secret_command(command, what)
    elif os.environ.get(variable):
        secret = os.environ[variable].encode()
    else:
        return None
    if not secret:
        raise UsageError(f"the configured {what} is empty")
    return secret


@dataclass(frozen=True)
class OtherRepo:
    """The second repository of `agent copy` (AGENT_TO_*) or `agent init --from-repo` (AGENT_FROM_*):
    its URL and where its passphrase comes from (flags win over the variables)."""

    url: str
    passphrase_file: str | None = None
    passphrase_command: str | None = None
    passphrase_variable: str = env.TO_PASSPHRASE
    what: str = "target repository passphrase"

    def passphrase(self) -> bytes | None:
        return passphrase_from(self.passphrase_file, self.passphrase_command, self.passphrase_variable, self.what)


def copy_target(url: str | None, passphrase_file: str | None, passphrase_command: str | None) -> OtherRepo:
    url = url or os.environ.get(env.TO_REPO)
    if not url:
        raise UsageError("no target repository given", hint="pass --to-repo or set AGENT_TO_REPO")
    return OtherRepo(url, passphrase_file or os.environ.get(env.TO_PASSPHRASE_FILE) or None,
                     passphrase_command or os.environ.get(env.TO_PASSPHRASE_COMMAND) or None)


def init_source(url: str, passphrase_file: str | None, passphrase_command: str | None) -> OtherRepo:
    return OtherRepo(url, passphrase_file or os.environ.get(env.FROM_PASSPHRASE_FILE) or None,
                     passphrase_command or os.environ.get(env.FROM_PASSPHRASE_COMMAND) or None,
                     env.FROM_PASSPHRASE, "source repository passphrase")


def parse_percent(text: str, what: str, *, allow_zero: bool = True) -> float:
    """`5%` (or `5`) as the fraction 0.05; one reading for every option and config field that takes a share."""
    try:
        p = float(text.strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"{what} takes a percentage like 5%, not {text!r}") from None
    if not (p >= 0 if allow_zero else p > 0) or p > 100:
        raise UsageError(f"{what} must be between 0% and 100%, not {text!r}")
    return p / 100
