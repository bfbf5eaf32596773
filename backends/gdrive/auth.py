"""Google Drive credentials: the `agent login gdrive` flow, the token file, service accounts.

Why these choices:
- Scope `drive.file` by default: the agent sees only files it created, not the rest of the
  user's Drive, so a leaked token cannot read their documents.
- Login is the installed-app flow with a loopback redirect (Google retired the copy-paste "oob"
  flow in 2022). Headless machines use `paste`: the user opens the URL anywhere, the browser's
  redirect to 127.0.0.1 fails to load there, and they paste that address (or just the code).
  Nothing is printed here; the URL goes to the caller's `on_url`.
- PKCE and a random `state` guard the code exchange; the token file (a refresh token) is written
  atomically with mode 0600 by `backends.oauth_tokens`, because it grants access to the backups
  until revoked.
"""

from __future__ import annotations

import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from backends import env
from backends.errors import AuthError
from backends.oauth_tokens import TokenStore

DRIVE_FILE = "https://www.googleapis.com/auth/drive.file"
DRIVE = "https://www.googleapis.com/auth/drive"
SCOPES = {"drive.file": DRIVE_FILE, "drive": DRIVE}
TOKENS = TokenStore("gdrive", "Google Drive",
                    missing_hint=" (or set AGENT_GDRIVE_SERVICE_ACCOUNT for a Workspace service account)")


def default_token_path() -> Path:
    """AGENT_GDRIVE_TOKEN_FILE, else <user config dir>/agent/tokens/gdrive.json."""
    return TOKENS.default_path()


def _scope(name: str | None) -> str:
    name = name or os.environ.get(env.GDRIVE_SCOPE) or "drive.file"
    if name not in SCOPES and name not in SCOPES.values():
        raise AuthError(f"unknown Google Drive scope {name!r}; use drive.file (default) or drive")
    return SCOPES.get(name, name)


def load_credentials(token_file: str | os.PathLike | None = None, *, service_account_file: str | None = None,
                     subject: str | None = None, scope: str | None = None, token_uri: str | None = None):
    """Service account (AGENT_GDRIVE_SERVICE_ACCOUNT, optional AGENT_GDRIVE_SUBJECT for domain-wide
    delegation) if configured, else the authorized-user token file written by `login`.

    google-auth ignores a token file's own token_uri (always Google's); `token_uri` overrides it
    for a test server that stands in for all of Google.
    """
    sa_file = service_account_file or os.environ.get(env.GDRIVE_SERVICE_ACCOUNT)
    if sa_file:
        try:
            creds = service_account.Credentials.from_service_account_file(sa_file, scopes=[_scope(scope)])
        except (OSError, ValueError) as exc:
            raise AuthError(f"cannot use the service account key {sa_file}: {exc}") from exc
        subject = subject or os.environ.get(env.GDRIVE_SUBJECT)
        return creds.with_subject(subject) if subject else creds
    path = Path(token_file) if token_file else default_token_path()
    info = TOKENS.read_json(path)
    if not isinstance(info, dict):
        raise TOKENS.invalid(path, "is not an authorized-user token")
    try:
        creds = user_credentials.Credentials.from_authorized_user_info(info)
    except ValueError as exc:  # a missing field, or a bad expiry
        raise TOKENS.invalid(path, f"is unusable ({exc})") from None
    return creds.with_token_uri(token_uri) if token_uri else creds


def write_token(path: str | os.PathLike, payload: str) -> None:
    """Store `payload` (authorized-user JSON) with mode 0600, atomically: readers see the old token or the new one."""
    TOKENS.write_text(path, payload)


class _Redirect(BaseHTTPRequestHandler):
    """Receives the browser's redirect to the loopback address once, then tells the user to go back."""
    result: dict
    timeout = 10  # a connection that never sends a request must not stall the login

    def do_GET(self) -> None:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if "code" in query or "error" in query:
            self.result.update(query)
        body = b"<html><body>agent: authorization received; you can close this window.</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _wait_for_redirect(server: HTTPServer, result: dict, timeout: float) -> None:
    server.timeout = 0.2  # handle_request returns after this long without a connection
    deadline = time.monotonic() + timeout
    while not result and time.monotonic() < deadline:
        server.handle_request()
    if not result:
        raise AuthError(f"no authorization arrived within {timeout:.0f} s; run `agent login gdrive` again")


def _parse_paste(text: str) -> dict:
    text = text.strip()
    if "code=" in text or "error=" in text:
        return {k: v[-1] for k, v in parse_qs(urlsplit(text).query or text).items()}
    return {"code": text}


def login(token_path: str | os.PathLike | None, client_secrets: str | os.PathLike, *,
          on_url: Callable[[str], None], paste: Callable[[], str] | None = None, scope: str = "drive.file",
          port: int = 0, timeout: float = 300.0) -> Path:
    """Authorize the agent for Google Drive and store the refresh token; returns the token path.

    `client_secrets` is the Desktop OAuth client JSON from the Google Cloud console. `on_url`
    receives the authorization URL to show the user. Without `paste`, a loopback server on
    127.0.0.1:`port` (0 = any; fix it for `ssh -L`) waits for the browser's redirect. With `paste`,
    nothing listens: `paste()` must return what the user copied from the address bar after
    approving (the failed 127.0.0.1 page), or just the `code` value.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow  # only login needs it

    path = Path(token_path) if token_path else default_token_path()
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=[_scope(scope)])
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot use the OAuth client file {client_secrets}: {exc}") from exc
    server = None
    received: dict = {}  # the loopback server's handler fills it in
    if paste is None:
        try:
            server = HTTPServer(("127.0.0.1", port), type("Redirect", (_Redirect,), {"result": received}))
        except OSError as exc:
            raise AuthError(f"cannot listen on 127.0.0.1:{port} for Google's redirect: {exc}") from exc
        port = server.server_address[1]
    elif port == 0:
        port = 1  # nothing listens in paste mode; any loopback port is accepted for Desktop clients
    flow.redirect_uri = f"http://127.0.0.1:{port}/"
    url, state = flow.authorization_url(access_type="offline", prompt="consent")
    try:
        on_url(url)
        if server is not None:
            _wait_for_redirect(server, received, timeout)
            answer = received
        else:
            assert paste is not None  # no server only in paste mode
            answer = _parse_paste(paste())
    finally:
        if server is not None:
            server.server_close()
    if "error" in answer:
        raise AuthError(f"Google refused the authorization: {answer['error']}")
    if answer.get("state", state) != state:
        raise AuthError("the authorization answer belongs to another login attempt (state mismatch); try again")
    try:
        flow.fetch_token(code=answer["code"])
    except Exception as exc:  # oauthlib raises its own tree; anything here means no token
        raise AuthError(f"exchanging the authorization code failed: {exc}") from exc
    creds = flow.credentials
    if not creds.refresh_token:
        raise AuthError("Google returned no refresh token; remove the agent's access at "
                        "https://myaccount.google.com/permissions and run `agent login gdrive` again")
    write_token(path, creds.to_json())
    return path
