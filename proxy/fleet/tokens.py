"""Credentials in Redis: one replica fetches, every replica uses, nobody can read them there.

An LWA token, a grantless token or an RDT is stored with its expiry, encrypted with AES-GCM
under a key derived from ``shared_state.encryption_key``; the Redis key name is the associated
data, so a value copied under another key does not decrypt either. A value that does not
decrypt (another key, another format, garbage) is a miss, never an error: the replica fetches
a token itself and stores it under its own key.

Fetching is single-flight across replicas: the replica that needs a token takes a short lock
(``SET NX PX``), fetches, stores and releases it; the others poll for the value until the
credential timeout, and fetch alone only if the holder never delivers (it died or hangs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from proxy.credentials.refreshable import ADVISORY_CAP_S, ADVISORY_FRACTION, Expiring
from proxy.fleet.keys import lock_key
from proxy.fleet.store import REDIS_ERRORS, SharedState, SharedStateDown
from proxy.secret import Secret

logger = logging.getLogger(__name__)

FORMAT = b"\x01"  # the first byte of every stored value: the layout below, version 1
NONCE_BYTES = 12
# Domain separation: the same passphrase used elsewhere does not give the same AES key.
KEY_CONTEXT = b"spapi-proxy shared token cache\0"
POLL_INTERVAL_S = 0.05
UNREADABLE_WARNING_INTERVAL_S = 60.0
# Compare-and-delete: a lock is released by its holder only, never after it expired and
# another replica took it.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Fetch = Callable[[], Awaitable[Expiring[Secret]]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class SharedToken:
    token: Secret
    expires_at: float  # epoch seconds
    issued_at: float  # when it was fetched: with expires_at, its lifetime and refresh point

    def fresh(self, now: float) -> bool:
        """Before the point where the replicas' caches start refreshing it."""
        lifetime = max(self.expires_at - self.issued_at, 0.0)
        return now < self.expires_at - min(lifetime * ADVISORY_FRACTION, ADVISORY_CAP_S)


class TokenCipher:
    def __init__(self, encryption_key: Secret) -> None:
        if not encryption_key:
            raise ValueError("an encryption key is needed to share tokens")
        digest = hashlib.sha256(KEY_CONTEXT + encryption_key.reveal().encode()).digest()
        self._aead = AESGCM(digest)

    def seal(self, redis_key: str, token: SharedToken) -> bytes:
        plain = json.dumps(
            {"t": token.token.reveal(), "e": token.expires_at, "i": token.issued_at}
        ).encode()
        nonce = os.urandom(NONCE_BYTES)
        return FORMAT + nonce + self._aead.encrypt(nonce, plain, redis_key.encode())

    def open(self, redis_key: str, sealed: bytes) -> SharedToken | None:
        """The token, or None for anything that isn't one sealed under this key and name."""
        if not sealed.startswith(FORMAT):
            return None
        nonce = sealed[1 : 1 + NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, sealed[1 + NONCE_BYTES :], redis_key.encode())
            document: Any = json.loads(plain)
            return SharedToken(
                Secret(str(document["t"])), float(document["e"]), float(document["i"])
            )
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None


class SharedTokens:
    """Reads, writes and single-flight fetches of encrypted credentials in Redis.

    Redis failures before a token is in hand raise :class:`SharedStateDown` (the caller fetches
    alone or refuses); after it, they are recorded and the fetched token is returned anyway.
    """

    def __init__(
        self,
        state: SharedState,
        cipher: TokenCipher,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._cipher = cipher
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._release = state.client.register_script(RELEASE_SCRIPT)
        self._next_unreadable_warning = 0.0

    async def get_or_fetch(
        self, key: str, fetch: Fetch, wait_s: float, refused: Container[Secret] = ()
    ) -> Expiring[Secret]:
        """A fresh token from Redis, else one fetched by exactly one replica of the fleet.

        ``wait_s`` bounds both the lock (a holder that dies frees it then) and how long this
        replica waits for another's fetch before fetching alone. A stored token in ``refused``
        (SP-API rejected it) counts as missing, and is replaced.
        """
        deadline = self._monotonic() + wait_s
        owner = secrets.token_hex(8)
        while True:
            cached = await self.read(key, refused)
            if cached is not None:
                return Expiring(cached.token, cached.expires_at)
            if await self._lock(key, owner, wait_s):
                try:
                    # Another replica may have stored it between the read and the lock.
                    cached = await self.read(key, refused)
                    if cached is not None:
                        return Expiring(cached.token, cached.expires_at)
                    return await self._fetch_and_store(key, fetch)
                finally:
                    await self._unlock(key, owner)
            if self._monotonic() >= deadline:
                logger.warning(
                    "no replica delivered a shared token in %g s; fetching alone", wait_s
                )
                return await self._fetch_and_store(key, fetch)
            await self._sleep(POLL_INTERVAL_S)

    async def read(self, key: str, refused: Container[Secret] = ()) -> SharedToken | None:
        """The stored token if it is fresh, readable with this replica's key, and not one of
        ``refused``."""
        sealed = await self._call(lambda redis: redis.get(key))
        if sealed is None:
            return None
        token = self._cipher.open(key, sealed)
        if token is None:
            self._unreadable()
            return None
        if token.token in refused or not token.fresh(self._clock()):
            return None
        return token

    async def _fetch_and_store(self, key: str, fetch: Fetch) -> Expiring[Secret]:
        issued_at = self._clock()
        fetched = await fetch()
        ttl_ms = int((fetched.expires_at - self._clock()) * 1000)
        if ttl_ms > 0:
            sealed = self._cipher.seal(
                key, SharedToken(fetched.value, fetched.expires_at, issued_at)
            )
            # A failure is recorded; the token is good for this replica all the same.
            with contextlib.suppress(SharedStateDown):
                await self._call(lambda redis: redis.set(key, sealed, px=ttl_ms))
        return fetched

    async def _lock(self, key: str, owner: str, hold_s: float) -> bool:
        hold_ms = max(1, int(hold_s * 1000))
        taken = await self._call(lambda redis: redis.set(lock_key(key), owner, nx=True, px=hold_ms))
        return bool(taken)

    async def _unlock(self, key: str, owner: str) -> None:
        with contextlib.suppress(SharedStateDown):  # else the lock expires by itself
            await self._call(lambda redis: self._release(keys=[lock_key(key)], args=[owner]))

    async def _call(self, call: Callable[[Redis], Awaitable[Any]]) -> Any:
        state = self._state
        if not state.usable():
            raise SharedStateDown("recently failed")
        try:
            result = await call(state.client)
        except REDIS_ERRORS as error:
            raise state.failed(error) from None
        state.succeeded()
        return result

    def _unreadable(self) -> None:
        now = self._monotonic()
        if now >= self._next_unreadable_warning:
            self._next_unreadable_warning = now + UNREADABLE_WARNING_INTERVAL_S
            logger.warning(
                "a token in Redis could not be decrypted (another shared_state.encryption_key "
                "on some replica?); fetching one instead"
            )
