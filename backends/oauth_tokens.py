"""Token files of the cloud-drive logins (`agent login gdrive|dropbox|onedrive`).

Why one module: a token file holds a refresh token, which opens the backups until it is revoked,
so it must be private from its first byte and never seen half-written. That is easy to get subtly
wrong (a chmod after the write, a truncate-and-rewrite a crash interrupts), so it is done once,
here: the file is created 0600 (a missing directory 0700), fsynced, then renamed over the old
one; a reader sees the old token or the new one. The same goes for where the file lives and for what a
missing or damaged file tells the user.

Each backend keeps its own file format (google-auth's authorized-user JSON, Dropbox's app key and
refresh token, msal's serialized cache) and checks its contents itself. No SDK is imported here.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import env
from backends.errors import AuthError


@dataclass(frozen=True)
class TokenStore:
    """The token file of one service: `name` (gdrive) names the environment variable, the default
    file and the login command; `title` (Google Drive) is what messages call the service."""

    name: str
    title: str
    missing_hint: str = ""  # appended to the "no login" message, e.g. an alternative to logging in

    @property
    def env_var(self) -> str:
        return env.token_file(self.name)

    @property
    def login_again(self) -> str:
        return f"run `agent login {self.name}` again"

    def default_path(self) -> Path:
        """AGENT_<NAME>_TOKEN_FILE, else <user config dir>/agent/tokens/<name>.json."""
        override = os.environ.get(self.env_var)
        if override:
            return Path(override).expanduser()
        import platformdirs

        return Path(platformdirs.user_config_dir("agent")) / "tokens" / f"{self.name}.json"

    def read_json(self, path: str | os.PathLike | None = None) -> Any:
        """The parsed file; AuthError saying to log in (again) if it is missing or unreadable."""
        path = Path(path) if path else self.default_path()
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AuthError(f"no {self.title} login at {path}; "
                            f"run `agent login {self.name}`{self.missing_hint}") from None
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
            raise AuthError(f"cannot read the {self.title} token file {path} ({exc}); {self.login_again}") from None

    def invalid(self, path: str | os.PathLike, problem: str) -> AuthError:
        """The error for a file that parsed but is unusable: `problem` says why ("lacks ...")."""
        return AuthError(f"the {self.title} token file {path} {problem}; {self.login_again}")

    def write_text(self, path: str | os.PathLike, text: str) -> None:
        """Replace the file with `text`: a temp file in the same directory (mkstemp creates it 0600),
        fsync, rename. A new directory gets 0700."""
        path = Path(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def write_json(self, path: str | os.PathLike, data: Any) -> None:
        self.write_text(path, json.dumps(data, indent=2) + "\n")
