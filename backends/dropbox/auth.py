"""Dropbox login (OAuth 2 with PKCE, no redirect) and the token file it leaves behind.

Why PKCE: a backup tool installed on servers cannot keep an app secret secret, and PKCE needs
none. `token_access_type="offline"` yields a long-lived refresh token; the SDK turns it into
short-lived access tokens by itself (`oauth2_refresh_token` + `app_key`), so only the refresh
token and the app key are stored. The file is written 0600, atomically (temp file + rename), so
a crash never leaves half a token file and no other local user can read it.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from backends.errors import AuthError

TOKEN_FILE_ENV = "AGENT_DROPBOX_TOKEN_FILE"
APP_KEY_ENV = "AGENT_DROPBOX_APP_KEY"


def default_token_path() -> Path:
    """AGENT_DROPBOX_TOKEN_FILE, else <user config dir>/agent/tokens/dropbox.json."""
    env = os.environ.get(TOKEN_FILE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("agent")) / "tokens" / "dropbox.json"


def load_token(path: Path | None = None) -> dict:
    """The stored {"app_key", "refresh_token", ...}; AuthError with the login hint if unusable."""
    path = path or default_token_path()
    try:
        token = json.loads(path.read_text())
    except FileNotFoundError:
        raise AuthError(f"no Dropbox login found at {path}; run `agent login dropbox`") from None
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read the Dropbox token file {path} ({exc}); run `agent login dropbox` again") from None
    if not isinstance(token, dict) or not token.get("app_key") or not token.get("refresh_token"):
        raise AuthError(f"the Dropbox token file {path} lacks app_key/refresh_token; run `agent login dropbox` again")
    return token


def save_token(path: Path, token: dict) -> None:
    """Write `token` to `path` with mode 0600 via a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".dropbox-", suffix=".tmp", dir=path.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(token, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def login(token_path: Path, app_key: str, prompt: Callable[[str], str]) -> None:
    """Run the PKCE no-redirect flow and store the refresh token at `token_path`.

    `prompt(url)` shows the authorization URL to the user and returns the code Dropbox
    displayed after they approved the app (the CLI prints and reads; tests answer for the user).
    """
    from dropbox.oauth import DropboxOAuth2FlowNoRedirect
    from requests import exceptions as req_exc

    if not app_key:
        raise AuthError("a Dropbox app key is needed (create an app in the Dropbox App Console; "
                        "see docs/backends-dropbox.md)")
    flow = DropboxOAuth2FlowNoRedirect(app_key, use_pkce=True, token_access_type="offline")
    code = prompt(flow.start()).strip()
    if not code:
        raise AuthError("no authorization code entered; run `agent login dropbox` again")
    try:
        result = flow.finish(code)
    except req_exc.HTTPError as exc:
        raise AuthError(f"Dropbox did not accept the authorization code (HTTP {exc.response.status_code}); "
                        "codes are single-use and expire quickly: run `agent login dropbox` again") from None
    except req_exc.RequestException as exc:
        raise AuthError(f"could not reach Dropbox to finish the login: {exc}") from None
    if not result.refresh_token:
        raise AuthError("Dropbox returned no refresh token; check that the app uses short-lived tokens "
                        "with offline access, then run `agent login dropbox` again")
    save_token(Path(token_path), {
        "app_key": app_key,
        "refresh_token": result.refresh_token,
        "account_id": result.account_id,
        "scope": result.scope,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
