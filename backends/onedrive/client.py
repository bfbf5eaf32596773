"""Building the Graph client: our endpoint, our token provider, and no SDK-level retries.

`GraphRequestAdapter(auth)` would build its own httpx client with the SDK's default middleware,
whose RetryHandler retries 429/503/504 up to 3 times with its own waits. The project retries in
one place (backends.middleware.retry, honouring Retry-After under one deadline), so the client
is built with the same default middleware but `RetryHandlerOption(max_retries=0)`; the
`/users/me-token-to-replace` -> `/me` rewrite that `client.me` relies on is passed along too,
since handing in our own client otherwise drops it. The redirect handler stays: content GETs
answer 302 to a pre-authenticated download URL and it follows them, keeping the Range header.

Replies are taken through Kiota's NativeResponseHandler as plain JSON, not deserialized into
msgraph models: building one DriveItem costs 10-15 ms of CPU in msgraph-sdk 1.65 (each Entity
rebuilds a dict of thousands of field deserializers), which would make listing 10,000 packs take
minutes. Requests, auth, middleware and transport are still the SDK's.
"""

from __future__ import annotations

from typing import Any, Coroutine

import httpx
from kiota_abstractions.authentication import AccessTokenProvider, BaseBearerTokenAuthenticationProvider
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption, UrlReplaceHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

GRAPH_ENDPOINT = "https://graph.microsoft.com/v1.0"


def build_graph_client(endpoint: str, tokens: AccessTokenProvider, *, max_connections: int,
                       timeout: float) -> tuple[GraphServiceClient, httpx.AsyncClient]:
    """A GraphServiceClient for `endpoint` and its httpx client (to close); build it on the loop that uses it."""
    options = {
        UrlReplaceHandlerOption.get_key(): UrlReplaceHandlerOption(
            enabled=True, replacement_pairs={"/users/me-token-to-replace": "/me"}),
        RetryHandlerOption.get_key(): RetryHandlerOption(delay=0, max_retries=0, should_retry=False),
    }
    http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)), http2=True,
                             limits=httpx.Limits(max_connections=max_connections))
    http = GraphClientFactory.create_with_default_middleware(client=http, options=options)
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(tokens), client=http)
    adapter.base_url = endpoint.rstrip("/")  # before GraphServiceClient copies it into its path parameters
    return GraphServiceClient(request_adapter=adapter), http


def build_upload_client(*, max_connections: int, timeout: float) -> httpx.AsyncClient:
    """Plain httpx for upload-session URLs: they are pre-authenticated and refuse Authorization."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)), http2=True,
                             follow_redirects=False, limits=httpx.Limits(max_connections=max_connections))


def native(headers: dict[str, str] | None = None, query: Any = None) -> RequestConfiguration:
    """Request options that hand back the httpx response itself instead of a deserialized model."""
    config = RequestConfiguration(options=[ResponseHandlerOption(NativeResponseHandler())], query_parameters=query)
    for name, value in (headers or {}).items():
        config.headers.add(name, value)
    return config


async def ok(call: Coroutine[Any, Any, Any]) -> Any:
    """Await an SDK call made with `native()`; Graph errors become httpx.HTTPStatusError for translate()."""
    response = await call
    response.raise_for_status()
    return response


async def json_of(call: Coroutine[Any, Any, Any]) -> dict:
    response = await ok(call)
    return response.json() if response.content else {}
