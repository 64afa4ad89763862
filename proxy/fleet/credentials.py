"""Credential fetches routed through the fleet's cache.

A :class:`SharedFetch` stands where a credential source's ``fetch`` stood, under the process's
own :class:`~proxy.credentials.refreshable.Refreshable`: that cache still answers most requests
from memory and decides when to refresh; a refresh asks Redis first, and only one replica of
the fleet then asks LWA or the Tokens API.
"""

from __future__ import annotations

from proxy.credentials.refreshable import Expiring
from proxy.fleet.store import OnError, SharedState, SharedStateDown
from proxy.fleet.tokens import Fetch, SharedTokens
from proxy.secret import Secret


class SharedFetch:
    def __init__(
        self, tokens: SharedTokens, state: SharedState, key: str, fetch: Fetch, wait_s: float
    ) -> None:
        self._tokens = tokens
        self._state = state
        self._key = key
        self._fetch = fetch
        self._wait_s = wait_s
        self._refused: Secret | None = None

    async def __call__(self) -> Expiring[Secret]:
        try:
            return await self._tokens.get_or_fetch(
                self._key, self._fetch, self._wait_s, self._refused
            )
        except SharedStateDown:
            if self._state.on_error is OnError.REFUSE:
                raise self._state.unavailable() from None
            return await self._fetch()  # alone, as without Redis

    def refuse(self, token: Secret) -> None:
        """SP-API rejected ``token``: the next fetch replaces it in Redis too."""
        self._refused = token
