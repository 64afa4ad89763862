"""How a credential cache can be shared with other proxies, without knowing with what.

The credential store and the RDT cache keep their own in-memory :class:`Refreshable` caches;
with sharing, each cache's fetch goes through a :class:`CredentialSharing` first (the fleet's
Redis, in ``proxy/fleet/``), which answers from the fleet's copy or lets one replica fetch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from proxy.credentials.refreshable import Expiring
from proxy.secret import Secret

TokenFetch = Callable[[], Awaitable[Expiring[Secret]]]


class CredentialSharing(Protocol):
    def lwa_token(self, fetch: TokenFetch) -> TokenFetch:
        """``fetch`` (the seller's LWA token), through the fleet's copy."""
        ...

    def grantless_token(self, scope: str, fetch: TokenFetch) -> TokenFetch: ...

    def rdt(
        self, method: str, path: str, data_elements: tuple[str, ...], fetch: TokenFetch
    ) -> TokenFetch: ...

    def refuse(self, token: Secret) -> None:
        """SP-API rejected ``token``: the fleet's copy must not be handed out again."""
        ...
