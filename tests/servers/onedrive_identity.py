"""The Entra ID (v2.0) side of the OneDrive fake: just what msal needs for the device-code flow.

msal refuses authorities that are not https, so this side is served over TLS with a throwaway
self-signed certificate; tests hand msal a requests.Session that trusts it. It answers the
OpenID configuration, the device-code endpoint and the token endpoint (device code and refresh
token grants). Tokens are random strings the Graph side checks; the id token is unsigned
(msal no longer validates it). A revoked refresh token gets `invalid_grant`, as from Entra ID.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import time
from pathlib import Path
from urllib.parse import parse_qs

from tests.servers.tls import server_context


def identity_reply(fake, origin: str, path: str, body: bytes) -> tuple[int, dict, dict]:
    """Answer an Entra ID request for `path` (under `origin`); the caller holds the fake's lock."""
    base = f"{origin}/{path.strip('/').split('/')[0]}"
    if path.endswith("/.well-known/openid-configuration"):
        return 200, {}, {"issuer": base + "/v2.0", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
                         "token_endpoint": base + "/oauth2/v2.0/token",
                         "device_authorization_endpoint": base + "/oauth2/v2.0/devicecode"}
    form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
    if form.get("client_id") != fake.client_id:
        return 400, {}, {"error": "unauthorized_client", "error_description": "AADSTS700016: unknown application"}
    if path.endswith("/devicecode"):
        device, user = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
        fake.device_codes[device] = {"user_code": user, "approved": False, "scope": form.get("scope", "")}
        return 200, {}, {"device_code": device, "user_code": user, "expires_in": 900, "interval": 1,
                         "verification_uri": "https://microsoft.com/devicelogin",
                         "message": "To sign in, use a web browser to open the page https://microsoft.com/"
                                    f"devicelogin and enter the code {user} to authenticate."}
    grant = form.get("grant_type", "")
    if grant == "urn:ietf:params:oauth:grant-type:device_code":
        flow = fake.device_codes.get(form.get("device_code", ""))
        if flow is None or not flow["approved"]:
            return 400, {}, {"error": "authorization_pending" if flow else "expired_token",
                             "error_description": "AADSTS70016: the user has not finished signing in"}
        del fake.device_codes[form["device_code"]]
        return 200, {}, issue_tokens(fake, flow["scope"])
    if grant == "refresh_token":
        if form.get("refresh_token") not in fake.refresh_tokens:
            return 400, {}, {"error": "invalid_grant", "error_codes": [700082], "suberror": "bad_token",
                             "error_description": "AADSTS700082: The refresh token has expired due to inactivity."}
        return 200, {}, issue_tokens(fake, form.get("scope", ""))
    return 400, {}, {"error": "unsupported_grant_type", "error_description": grant}


def issue_tokens(fake, scope: str) -> dict:
    access, refresh, now = "at-" + secrets.token_urlsafe(16), "rt-" + secrets.token_urlsafe(16), int(time.time())
    fake.access_tokens[access] = now + fake.access_token_lifetime
    fake.refresh_tokens.add(refresh)
    claims = {"iss": fake.authority.replace("/common", "/t1/v2.0"), "aud": fake.client_id, "sub": "s1",
              "oid": "u1", "tid": "t1", "iat": now, "exp": now + 3600, "preferred_username": "user@example.com"}
    return {"token_type": "Bearer", "scope": scope, "expires_in": fake.access_token_lifetime,
            "ext_expires_in": fake.access_token_lifetime, "access_token": access, "refresh_token": refresh,
            "id_token": f"{_b64({'alg': 'none'})}.{_b64(claims)}.", "client_info": _b64({"uid": "u1", "utid": "t1"})}


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def tls_context(tls_dir: Path) -> ssl.SSLContext:
    """A throwaway self-signed certificate for 127.0.0.1 (msal refuses plain-http authorities); CA in ca.pem."""
    return server_context(tls_dir, "onedrive-fake")[1]
