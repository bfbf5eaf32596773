"""Google's OAuth endpoints for the Drive fake: consent (authorization code + PKCE) and token.

A mixin for the fake's request handler, kept apart so the Drive routes stay readable. It covers
what the agent's credentials use: the installed-app code exchange, refresh tokens (revocable by
leaving them out of `state.refresh_tokens`) and the service-account JWT grant.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlencode


def _jwt_claims(assertion: str) -> dict:
    """The payload of a service account's signed JWT (the signature is not checked here)."""
    try:
        payload = assertion.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


class OAuthRoutes:
    """Served at /o/oauth2/auth and /token; needs the handler's state, query, body and _json/_send."""

    def _consent(self) -> None:
        """The user clicking "Allow": redirect to redirect_uri with a code bound to the PKCE challenge."""
        code = secrets.token_urlsafe(16)
        with self.state.lock:
            self.state.codes[code] = dict(self.query)
        target = self.query["redirect_uri"] + "?" + urlencode({"state": self.query.get("state", ""), "code": code,
                                                               "scope": self.query.get("scope", "")})
        self._send(302, b"", {"Location": target}, "text/html")

    def _token(self) -> None:
        form = {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}
        with self.state.lock:
            if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in self.state.refresh_tokens:
                reply = {"scope": form.get("scope", "")}
            elif form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer" and \
                    _jwt_claims(form.get("assertion", "")).get("iss") in self.state.service_accounts:
                reply = {}
            elif form.get("grant_type") == "authorization_code" and form.get("code") in self.state.codes:
                grant = self.state.codes.pop(form["code"])
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
                if grant.get("redirect_uri") != form.get("redirect_uri") or grant.get("code_challenge") != challenge:
                    return self._json({"error": "invalid_grant", "error_description": "Bad Request"}, 400)
                reply = {"refresh_token": secrets.token_urlsafe(24), "scope": grant.get("scope", "")}
                self.state.refresh_tokens.add(reply["refresh_token"])
            else:
                return self._json({"error": "invalid_grant",
                                   "error_description": "Token has been expired or revoked."}, 400)
            reply.update(access_token=secrets.token_urlsafe(24), expires_in=3599, token_type="Bearer")
            self.state.tokens.add(reply["access_token"])
        self._json(reply)
