"""OneDrive sign-in: device-code login through msal, and silent token refresh for the SDK.

The device-code flow needs no browser on the backup host: the user opens a URL anywhere and
types a short code. msal keeps the refresh token in its serializable cache, which we store with
the app's client id, authority and scopes in one JSON file (written by `backends.oauth_tokens`:
mode 0600, atomic replace), so the backend needs nothing but that file. Access tokens live about
an hour; msal refreshes them from the refresh token, and rotated refresh tokens are written back.
When the refresh token itself is expired or revoked, every call fails with one AuthError that
says to log in again.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import msal
from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator

from backends import env
from backends.errors import AuthError, TransientError
from backends.oauth_tokens import TokenStore
from backends.onedrive.errors import LOGIN_HINT

DEFAULT_AUTHORITY = "https://login.microsoftonline.com/common"
APP_FOLDER_SCOPES = ("Files.ReadWrite.AppFolder",)  # msal adds offline_access (refresh token) itself
WHOLE_DRIVE_SCOPES = ("Files.ReadWrite",)
TOKENS = TokenStore("onedrive", "OneDrive")
CLIENT_ID_ENV = env.ONEDRIVE_CLIENT_ID
_FORMAT = 1
_REFRESH_MARGIN = 300  # seconds before expiry at which a token counts as expired (msal uses the same)


def default_token_path() -> Path:
    """AGENT_ONEDRIVE_TOKEN_FILE, else <user config dir>/agent/tokens/onedrive.json."""
    return TOKENS.default_path()


def load_token_file(path: Path) -> dict[str, Any]:
    record = TOKENS.read_json(path)
    if not isinstance(record, dict) or record.get("format") != _FORMAT or "client_id" not in record:
        raise TOKENS.invalid(path, "is not in a known format")
    return record


def save_token_file(path: Path, record: dict[str, Any]) -> None:
    """Write atomically with mode 0600 (the refresh token is a password), in a 0700 directory."""
    TOKENS.write_json(path, record)


def _application(client_id: str, authority: str, cache: msal.TokenCache, http_client: Any | None):
    extra = {"http_client": http_client} if http_client is not None else {}
    try:
        return msal.PublicClientApplication(client_id, authority=authority, token_cache=cache,
                                            instance_discovery=False, **extra)
    except ValueError as exc:
        raise AuthError(f"bad OneDrive authority {authority!r}: {exc}") from None
    except OSError as exc:  # requests' errors are OSErrors: the tenant discovery call failed
        raise TransientError(f"cannot reach the Microsoft sign-in service ({exc})") from exc


def login(token_path: Path, client_id: str, show: Callable[[str], None], *, authority: str = DEFAULT_AUTHORITY,
          scopes: Sequence[str] = APP_FOLDER_SCOPES, http_client: Any | None = None) -> None:
    """Device-code sign-in; `show` gets Microsoft's message with the URL and code for the user.

    Blocks until the user finished (or the code expired, ~15 minutes), then saves the token file.
    """
    cache = msal.SerializableTokenCache()
    app = _application(client_id, authority, cache, http_client)
    try:
        flow = app.initiate_device_flow(scopes=list(scopes))
        if "user_code" not in flow:
            raise AuthError(f"OneDrive device-code sign-in could not start: "
                            f"{flow.get('error_description') or flow.get('error') or flow}")
        show(flow["message"])
        result = app.acquire_token_by_device_flow(flow)
    except OSError as exc:
        raise TransientError(f"cannot reach the Microsoft sign-in service ({exc})") from exc
    if "access_token" not in result:
        raise AuthError(f"OneDrive sign-in failed: {result.get('error_description') or result.get('error')}")
    save_token_file(token_path, {"format": _FORMAT, "client_id": client_id, "authority": authority,
                                 "scopes": list(scopes), "msal_cache": cache.serialize()})


class MsalTokenProvider(AccessTokenProvider):
    """Kiota token provider backed by the token file; msal runs in a worker thread (it blocks)."""

    def __init__(self, token_path: Path | None = None, allowed_hosts: Sequence[str] = ("graph.microsoft.com",),
                 *, http_client: Any | None = None) -> None:
        self.path = token_path or default_token_path()
        self._validator = AllowedHostsValidator(list(allowed_hosts))
        self._http_client = http_client
        self._lock = threading.Lock()
        self._app: Any = None
        self._cache: msal.SerializableTokenCache | None = None
        self._record: dict[str, Any] = {}
        self._token: tuple[str, float] | None = None  # (access token, expiry), swapped as a whole

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._validator

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict | None = None) -> str:
        if not self._validator.is_url_host_valid(uri):
            return ""  # never send the token to a host outside Graph (download and upload URLs)
        current = self._token
        if current is not None and time.time() < current[1] - _REFRESH_MARGIN:
            return current[0]
        return await asyncio.to_thread(self.access_token)

    def access_token(self) -> str:
        """A valid access token, refreshed through msal when needed (blocking)."""
        with self._lock:
            current = self._token
            if current is not None and time.time() < current[1] - _REFRESH_MARGIN:
                return current[0]
            if self._app is None:
                self._record = load_token_file(self.path)
                self._cache = msal.SerializableTokenCache()
                self._cache.deserialize(self._record.get("msal_cache") or "{}")
                self._app = _application(self._record["client_id"], self._record.get("authority", DEFAULT_AUTHORITY),
                                         self._cache, self._http_client)
            accounts = self._app.get_accounts()
            if not accounts:
                raise TOKENS.invalid(self.path, "holds no account")
            try:
                result = self._app.acquire_token_silent_with_error(
                    list(self._record.get("scopes", APP_FOLDER_SCOPES)), account=accounts[0])
            except OSError as exc:
                raise TransientError(f"cannot reach the Microsoft sign-in service ({exc})") from exc
            if not result or "access_token" not in result:
                reason = (result or {}).get("error_description") or (result or {}).get("error") or "no refresh token"
                reason = reason.splitlines()[0]
                raise AuthError(f"the OneDrive sign-in has expired or was revoked ({reason}); {LOGIN_HINT}")
            assert self._cache is not None  # created together with self._app
            if self._cache.has_state_changed:  # a refresh rotated the refresh token: keep the new one
                self._record["msal_cache"] = self._cache.serialize()
                save_token_file(self.path, self._record)
                self._cache.has_state_changed = False
            self._token = (result["access_token"], time.time() + int(result.get("expires_in", 0)))
            return self._token[0]


def client_id_from(explicit: str | None = None) -> str:
    """The Entra ID application (client) id: the --client-id value, else AGENT_ONEDRIVE_CLIENT_ID."""
    client_id = explicit or os.environ.get(CLIENT_ID_ENV, "")
    if not client_id:
        raise AuthError("OneDrive needs the client id of your app registration: pass --client-id or set "
                        f"{CLIENT_ID_ENV} (docs/backends-onedrive.md shows how to register one)")
    return client_id
