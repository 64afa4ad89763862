"""SP-API SDKs pointed at spapi-proxy, with no LWA call of their own (docs/sdks.md).

The proxy drops a client's `x-amz-access-token` and sends the token it fetched itself (the
grantless token or a restricted data token when the operation needs one), so an SDK only needs
a placeholder where it would put its own. No SDK is imported at module level: each class has
the shape its SDK calls, and this module loads in an application that has only one of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

PROXY_URL = "http://127.0.0.1:8000"
# Sent where the SDK would put its token; the proxy drops it (it is no RDT) and sends its own.
PLACEHOLDER_TOKEN = "spapi-proxy"
# python-amazon-sp-api refuses to build a client without these; nothing ever sends them.
PLACEHOLDER_CREDENTIALS = {"lwa_app_id": "spapi-proxy", "lwa_client_secret": "spapi-proxy"}

Client = TypeVar("Client")


class ProxyTokenClient:
    """python-amazon-sp-api's `auth_token_client_class`: a token for every call, fetched from
    nowhere. Its `get_auth()` and `get_grantless_auth()` answer objects with `access_token`."""

    access_token = PLACEHOLDER_TOKEN

    def __init__(self, *args: object, **kwargs: object) -> None:
        """Takes what the SDK passes (refresh token, credentials, proxies) and keeps none."""

    def get_auth(self) -> ProxyTokenClient:
        return self

    def get_grantless_auth(self, scope: str = "") -> ProxyTokenClient:
        return self


class ProxyTokenCache:
    """amzn-sp-api's `Configuration.access_token_cache`, which its `ApiClient` asks for a
    token when it is built and before every call."""

    def get_lwa_access_token(self) -> str:
        return PLACEHOLDER_TOKEN


def sp_api_client(api: Callable[..., Client], endpoint: str = PROXY_URL, **options: Any) -> Client:
    """A python-amazon-sp-api client (`Orders`, `Notifications`, …) whose every call goes to
    the proxy at `endpoint`; `options` go to the client (marketplace, timeout, version)."""
    client = api(
        credentials=PLACEHOLDER_CREDENTIALS, auth_token_client_class=ProxyTokenClient, **options
    )
    # The SDK takes its endpoint from the marketplace and has no option for it.
    client.endpoint = endpoint.rstrip("/")  # type: ignore[attr-defined]
    return client


def amzn_sp_api_client(endpoint: str = PROXY_URL) -> Any:
    """An amzn-sp-api `ApiClient` for every `…Api` class, sending every call to the proxy.

    Not `SPAPIClient`: that one fetches an LWA token itself when it is built."""
    spapi = importlib.import_module("spapi")
    configuration = spapi.Configuration()
    configuration.host = endpoint.rstrip("/")
    configuration.access_token_cache = ProxyTokenCache()
    return spapi.ApiClient(configuration)
