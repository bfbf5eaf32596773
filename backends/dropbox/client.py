"""Building the SDK client: token refresh, TLS trust, host override and the SDK's own retries.

Retries: the SDK retries 5xx itself (`max_retries_on_error`) and, by default, 429s without
limit. Here 429s are never retried by the SDK (`max_retries_on_rate_limit=0`) and 5xx at most
once, quickly: `backends.middleware.RetryBackend` is the project's one retry loop, it honours
the server's Retry-After and an overall deadline, and two stacked loops would multiply waits.

Test endpoints: the SDK always speaks HTTPS to `_host_map[...]`. `endpoint=HOST:PORT` points
all three hosts (api, content, notify) there, and `ca=FILE` trusts that CA only. With a custom
CA, `trust_env` is turned off, because requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override
a session's `verify`.
"""

from __future__ import annotations

import dropbox
from dropbox.session import HOST_API, HOST_CONTENT, HOST_NOTIFY

USER_AGENT = "agent-backup"


class _Dropbox(dropbox.Dropbox):
    """The SDK client, refreshing tokens at the API host it is configured for.

    `Dropbox.refresh_access_token` defaults its host to the import-time API_HOST, ignoring
    `_host_map`; with the default map both are the same Dropbox host.
    """

    def refresh_access_token(self, host=None, scope=None):
        return super().refresh_access_token(host=host or self._host_map[HOST_API], scope=scope)


def make_client(app_key: str, refresh_token: str, *, endpoint: str | None = None, ca: str | None = None,
                max_retries_on_error: int = 1, timeout: float = 100.0, pool_size: int = 16) -> dropbox.Dropbox:
    """An SDK client that refreshes its access token from `refresh_token` + `app_key` (PKCE: no secret)."""
    session = dropbox.create_session(max_connections=pool_size, ca_certs=ca)
    if ca:
        session.trust_env = False
    client = _Dropbox(oauth2_refresh_token=refresh_token, app_key=app_key, session=session,
                      max_retries_on_error=max_retries_on_error, max_retries_on_rate_limit=0,
                      timeout=timeout, user_agent=USER_AGENT)
    if endpoint:
        client._host_map = {HOST_API: endpoint, HOST_CONTENT: endpoint, HOST_NOTIFY: endpoint}
    return client
