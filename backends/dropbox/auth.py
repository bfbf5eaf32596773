"""Dropbox login (OAuth 2 with PKCE, no redirect) and the token file it leaves behind.

Why PKCE: a backup tool installed on servers cannot keep an app secret secret, and PKCE needs
none. `token_access_type="offline"` yields a long-lived refresh token; the SDK turns it into
short-lived access tokens by itself (`oauth2_refresh_token` + `app_key`), so only the refresh
token and the app key are stored. `backends.oauth_tokens` writes the file 0600, atomically (temp
file + rename), so a crash never leaves half a token file and no other local user can read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Callable

from backends.errors import AuthError
from backends.oauth_tokens import TokenStore

TOKENS = TokenStore("dropbox", "Dropbox")


def default_token_path() -> Path:
    """AGENT_DROPBOX_TOKEN_FILE, else <user config dir>/agent/tokens/dropbox.json."""
    return TOKENS.default_path()


def load_token(path: Path | None = None) -> dict:
    """The stored {"app_key", "refresh_token", ...}; AuthError with the login hint if unusable."""
    path = path or default_token_path()
    token = TOKENS.read_json(path)
    if not isinstance(token, dict) or not token.get("app_key") or not token.get("refresh_token"):
        raise TOKENS.invalid(path, "lacks app_key/refresh_token")
    return token


def save_token(path: Path, token: dict) -> None:
    """Store `token` at `path` with mode 0600, atomically (temp file in the same directory + rename)."""
    TOKENS.write_json(path, token)


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
        assert exc.response is not None  # raised by raise_for_status(), which attaches the response
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
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    })
