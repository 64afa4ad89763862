"""The Redis the replicas share: one client per process, every call bounded, health watched.

Every call is bounded by ``shared_state.timeout_s`` through the client's own per-connection
socket timeouts (connect and read), with retries off: a slow, stopped or absent Redis costs a
request at most one timeout, never a hang, and adds no timer of ours per request.

After a failure Redis is left alone for ``RETRY_INTERVAL_S``: requests in that window go on
without it (local state, or 503 with ``on_error: refuse``) instead of each waiting for a Redis
known to be down. The first request after the window probes it, so Redis back means shared
again without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

from proxy.errors import SharedStateUnavailable

logger = logging.getLogger(__name__)

# What a Redis call can raise when Redis is down, slow, flushed mid-script or restarting.
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
RETRY_INTERVAL_S = 1.0
# A Redis outage is one condition, not one per request: said at most this often.
WARNING_INTERVAL_S = 60.0

Clock = Callable[[], float]


class OnError(Enum):
    LOCAL = "local"  # serve with this process's own buckets and tokens
    REFUSE = "refuse"  # answer 503 SharedStateUnavailable


class SharedStateDown(Exception):
    """Redis did not answer (or is known to be down for now); the caller goes local or refuses."""


class SharedState:
    """The Redis client, the key prefix, and whether Redis is usable right now."""

    def __init__(
        self,
        client: Redis,
        key_prefix: str,
        on_error: OnError,
        timeout_s: float,
        location: str = "redis",
        clock: Clock = time.monotonic,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.on_error = on_error
        self.timeout_s = timeout_s  # one call's bound
        self.location = location  # for log lines: host, port and database, never a password
        self.healthy = True
        self._clock = clock
        self._on_health = on_health
        self._retry_at = 0.0  # 0.0: no failure pending (the hot path tests just this)
        self._next_warning = 0.0

    @classmethod
    def from_url(
        cls,
        redis_url: str,
        key_prefix: str,
        timeout_s: float,
        on_error: OnError,
        clock: Clock = time.monotonic,
        on_health: Callable[[bool], None] | None = None,
    ) -> SharedState:
        client = Redis.from_url(
            redis_url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # One immediate retry, on a closed connection only: a pooled connection to a Redis
            # that restarted fails at once and a new one then works. Timeouts are not retried
            # (the client's default retries, with backoff, would multiply the bound); after
            # a failure the next request after RETRY_INTERVAL_S tries again.
            retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
        )
        return cls(
            client, key_prefix, on_error, timeout_s, location_of(redis_url), clock, on_health
        )

    def usable(self) -> bool:
        """False while a recent failure says Redis is down; True for the one caller that probes."""
        if not self._retry_at:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        # This caller probes; the others keep going without Redis until it has an answer.
        self._retry_at = now + RETRY_INTERVAL_S
        return True

    def failed(self, error: BaseException) -> SharedStateDown:
        """Record a failed call; returns the exception for the caller to raise."""
        now = self._clock()
        self._retry_at = now + RETRY_INTERVAL_S
        if self.healthy:
            self.healthy = False
            if self._on_health is not None:
                self._on_health(False)
        if now >= self._next_warning:
            self._next_warning = now + WARNING_INTERVAL_S
            fallback = (
                "serving with this process's own buckets and tokens"
                if self.on_error is OnError.LOCAL
                else "answering 503 SharedStateUnavailable (shared_state.on_error: refuse)"
            )
            # The error's class only: its text may quote the URL the password is in.
            logger.warning(
                "shared state at %s unavailable (%s); %s until it answers again",
                self.location,
                type(error).__name__,
                fallback,
            )
        return SharedStateDown(type(error).__name__)

    def succeeded(self) -> None:
        """Record a call that worked (one comparison unless Redis was just down)."""
        if not self._retry_at:
            return
        self._retry_at = 0.0
        if not self.healthy:
            self.healthy = True
            if self._on_health is not None:
                self._on_health(True)
            logger.info("shared state at %s answers again; shared once more", self.location)

    def unavailable(self) -> SharedStateUnavailable:
        return SharedStateUnavailable(
            "The shared state (Redis) the proxies coordinate through is unavailable, and "
            "shared_state.on_error is refuse.",
            "Retry shortly; check that Redis at shared_state.redis_url is running, or set "
            "shared_state.on_error to local to serve without it.",
        )

    async def close(self) -> None:
        await self.client.aclose()


def location_of(redis_url: str) -> str:
    """``host:port/db`` (or the socket path) of a Redis URL, without user or password."""
    try:
        parts = urlsplit(redis_url)
        if parts.scheme == "unix":
            return f"unix:{parts.path}"
        port = parts.port or 6379
    except ValueError:
        return "redis (unparseable shared_state.redis_url)"
    database = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{parts.hostname}:{port}/{database}"
