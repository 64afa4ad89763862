"""The process's part of the fleet: one Redis client with its health, the shared buckets and
token cache, and for each profile the limiter and credential sharing its runtime uses."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from proxy.config.settings import Profile, SharedStateSettings, UpstreamSettings
from proxy.fleet.buckets import SharedBuckets
from proxy.fleet.credentials import FleetCredentials
from proxy.fleet.keys import FleetKeys, seller_id
from proxy.fleet.limiter import FleetLimiter
from proxy.fleet.store import REDIS_ERRORS, OnError, SharedState
from proxy.fleet.tokens import SharedTokens, TokenCipher
from proxy.forwarding.ratelimit import RateLimiter

OK, DEGRADED = "ok", "degraded"


class Fleet:
    def __init__(
        self,
        settings: SharedStateSettings,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.redis_url is None or settings.encryption_key is None:
            raise ValueError("a fleet needs shared_state.redis_url and encryption_key")
        degraded = Gauge(
            "spapi_proxy_shared_state_degraded",
            "1 while the shared state (Redis) can't be used: the proxy then serves with its own "
            "buckets and tokens (on_error: local) or answers 503 (refuse).",
            registry=registry,
        )
        self.state = SharedState.from_url(
            settings.redis_url.reveal(),
            settings.key_prefix,
            settings.timeout_s,
            OnError(settings.on_error),
            on_health=lambda healthy: degraded.set(0 if healthy else 1),
        )
        self.buckets = SharedBuckets(self.state)
        self.tokens = SharedTokens(self.state, TokenCipher(settings.encryption_key), clock)

    def limiter(self, profile: Profile, local: RateLimiter) -> FleetLimiter:
        return FleetLimiter(
            self.buckets, self.keys(profile), self.state, local, profile.upstream.sandbox
        )

    def credentials(self, profile: Profile) -> FleetCredentials:
        return FleetCredentials(
            self.tokens,
            self.state,
            self.keys(profile),
            lwa_wait_s=profile.lwa.timeout_s,
            rdt_wait_s=profile.upstream.timeout_s,
        )

    def keys(self, profile: Profile) -> FleetKeys:
        seller = seller_id(profile.lwa.client_id, profile.lwa.refresh_token.reveal())
        return FleetKeys(self.state.key_prefix, seller, region_of(profile.upstream))

    async def status(self) -> str:
        """``ok`` or ``degraded``, after asking Redis (PING) unless it is left alone for now:
        readiness probes then notice a Redis that went away, or came back, without traffic."""
        state = self.state
        if state.usable():
            try:
                await state.client.ping()
            except REDIS_ERRORS as error:
                state.failed(error)
            else:
                state.succeeded()
        return OK if state.healthy else DEGRADED

    async def close(self) -> None:
        await self.buckets.close()
        await self.state.close()


def region_of(upstream: UpstreamSettings) -> str:
    """Amazon's buckets differ per region and between production and sandbox; an endpoint
    override (a gateway, the emulator) is a place of its own."""
    region = f"{upstream.region}-sandbox" if upstream.sandbox else upstream.region
    if upstream.endpoint:
        region += "-" + hashlib.sha256(upstream.endpoint.encode()).hexdigest()[:8]
    return region
