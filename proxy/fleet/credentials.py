"""Credential fetches routed through the fleet's cache.

A :class:`SharedFetch` stands where a credential source's ``fetch`` stood, under the process's
own :class:`~proxy.credentials.refreshable.Refreshable`: that cache still answers most requests
from memory and decides when to refresh; a refresh asks Redis first, and only one replica of
the fleet then asks LWA or the Tokens API.
"""

from __future__ import annotations

from collections.abc import Container

from cachetools import LRUCache

from proxy.credentials.refreshable import Expiring
from proxy.credentials.sharing import TokenFetch
from proxy.fleet.keys import FleetKeys
from proxy.fleet.store import OnError, SharedState, SharedStateDown
from proxy.fleet.tokens import SharedTokens
from proxy.secret import Secret

# Tokens SP-API rejected lately, per profile: a handful at most (a revoked grant, a rotation).
MAX_REFUSED = 64


class SharedFetch:
    def __init__(
        self,
        tokens: SharedTokens,
        state: SharedState,
        key: str,
        fetch: TokenFetch,
        wait_s: float,
        refused: Container[Secret] = (),
    ) -> None:
        self._tokens = tokens
        self._state = state
        self._key = key
        self._fetch = fetch
        self._wait_s = wait_s
        self._refused = refused

    async def __call__(self) -> Expiring[Secret]:
        try:
            return await self._tokens.get_or_fetch(
                self._key, self._fetch, self._wait_s, self._refused
            )
        except SharedStateDown:
            if self._state.on_error is OnError.REFUSE:
                raise self._state.unavailable() from None
            return await self._fetch()  # alone, as without Redis


class FleetCredentials:
    """One profile's credential sharing (a ``CredentialSharing``): its keys, its timeouts, and
    the tokens SP-API refused, which no replica takes from Redis again."""

    def __init__(
        self,
        tokens: SharedTokens,
        state: SharedState,
        keys: FleetKeys,
        lwa_wait_s: float,
        rdt_wait_s: float,
    ) -> None:
        self._tokens = tokens
        self._state = state
        self._keys = keys
        self._lwa_wait_s = lwa_wait_s
        self._rdt_wait_s = rdt_wait_s
        self._refused: LRUCache[Secret, bool] = LRUCache(maxsize=MAX_REFUSED)

    def lwa_token(self, fetch: TokenFetch) -> TokenFetch:
        return self._shared(self._keys.lwa_token(), fetch, self._lwa_wait_s)

    def grantless_token(self, scope: str, fetch: TokenFetch) -> TokenFetch:
        return self._shared(self._keys.grantless_token(scope), fetch, self._lwa_wait_s)

    def rdt(
        self, method: str, path: str, data_elements: tuple[str, ...], fetch: TokenFetch
    ) -> TokenFetch:
        key = self._keys.rdt(method, path, data_elements)
        return self._shared(key, fetch, self._rdt_wait_s)

    def refuse(self, token: Secret) -> None:
        self._refused[token] = True

    def _shared(self, key: str, fetch: TokenFetch, wait_s: float) -> SharedFetch:
        return SharedFetch(self._tokens, self._state, key, fetch, wait_s, self._refused)
