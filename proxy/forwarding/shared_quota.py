"""Rate-limit buckets kept outside the process (the fleet's Redis, in ``proxy/fleet/``): what
the forwarder asks of them. Unlike this process's :class:`RateLimiter`, every call may wait for
the network, so each is a coroutine; the implementation falls back to the local limiter (or
refuses) when the shared buckets can't answer."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from proxy.forwarding.operations import Operation


class SharedQuota(Protocol):
    async def reserve(
        self, op: Operation | None, local_key: Hashable, max_wait_s: float
    ) -> float | None:
        """Seconds to wait with a token taken, or None: too long, answer 429 without sending."""
        ...

    async def retry_after(self, op: Operation | None, local_key: Hashable) -> float: ...

    async def observe_limit(self, op: Operation | None, local_key: Hashable, value: str) -> bool:
        """Apply an ``x-amzn-RateLimit-Limit`` value; True the first time one is unusable."""
        ...

    async def throttled(self, op: Operation | None, delay_s: float) -> None:
        """Amazon answered 429: no replica sends this operation for ``delay_s``."""
        ...
