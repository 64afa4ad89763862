"""The rate limiter of a proxy with shared state: the fleet's bucket, else its own.

With Redis, the bucket of an operation is the fleet's: every replica and every worker takes
from it, at the full plan (the workers don't split it 1/N, there is nothing to split). When
Redis can't answer, ``on_error: local`` falls back to the process's own limiter (each worker's
1/N share, as without Redis), and ``refuse`` answers 503.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable

from proxy.fleet.buckets import SharedBuckets
from proxy.fleet.keys import FleetKeys
from proxy.fleet.store import OnError, SharedState, SharedStateDown
from proxy.forwarding.operations import Operation
from proxy.forwarding.ratelimit import (
    MAX_LIMIT_PER_S,
    MIN_LIMIT_PER_S,
    SANDBOX_BURST,
    SANDBOX_RATE_PER_S,
    SLOWEST_REFILL_S,
    RateLimiter,
    Reservation,
)

Plan = tuple[float, float]  # rate per second, burst
GO = Reservation(True, 0.0)


def plan_of(op: Operation | None, sandbox: bool) -> Plan | None:
    """The usage plan the proxy applies to ``op``, or None when it has none to apply."""
    if op is None:
        return None
    if sandbox:
        rate, burst = SANDBOX_RATE_PER_S, float(SANDBOX_BURST)
    elif op.rate_per_s and op.burst:
        rate, burst = op.rate_per_s, float(op.burst)
    else:
        return None
    # As locally: a token at least every SLOWEST_REFILL_S, whatever the plan says.
    return max(rate, 1.0 / SLOWEST_REFILL_S), burst


class FleetLimiter:
    def __init__(
        self,
        buckets: SharedBuckets,
        keys: FleetKeys,
        state: SharedState,
        local: RateLimiter,
        sandbox: bool,
    ) -> None:
        self._buckets = buckets
        self._keys = keys
        self._state = state
        self._local = local
        self._sandbox = sandbox
        self._names: dict[tuple[str, str], str] = {}  # Redis key per (api, operation)

    async def reserve(
        self, op: Operation | None, local_key: Hashable, max_wait_s: float
    ) -> Reservation:
        plan = plan_of(op, self._sandbox)
        if op is None or plan is None:
            return GO  # no known plan: leave it to Amazon
        try:
            return await self._buckets.reserve(self._name(op), *plan, max_wait_s)
        except SharedStateDown:
            self._refuse_or_go_on()
            wait = self._local.reserve(local_key, op, max_wait_s)
            if wait is None:
                return Reservation(False, self._local.retry_after(local_key))
            return Reservation(True, wait)

    async def observe_limit(self, op: Operation | None, local_key: Hashable, value: str) -> bool:
        """Apply an ``x-amzn-RateLimit-Limit`` value for the fleet and this process.

        True the first time a bucket gets an unusable value (see RateLimiter.observe_limit).
        """
        unusable = self._local.observe_limit(local_key, value)
        plan = plan_of(op, self._sandbox)
        if op is None or plan is None:
            return unusable
        rate = parse_rate(value)
        if rate is not None:
            # SharedBuckets sends a rate once per value and RESEND_LEARNED_S (a repeat costs a
            # cache lookup); one unsaid while Redis is down is said with a later answer.
            with contextlib.suppress(SharedStateDown):
                await self._buckets.learn_rate(self._name(op), rate, plan[1])
        return unusable

    async def throttled(self, op: Operation | None, delay_s: float) -> None:
        """Amazon answered 429: every replica waits ``delay_s`` before its next call."""
        plan = plan_of(op, self._sandbox)
        if op is None or plan is None:
            return
        # Unsaid when Redis is down: this replica backs off all the same, the others will meet
        # their own 429.
        with contextlib.suppress(SharedStateDown):
            await self._buckets.throttled(self._name(op), *plan, delay_s)

    def _name(self, op: Operation) -> str:
        name = self._names.get((op.api, op.name))
        if name is None:
            name = self._names[op.api, op.name] = self._keys.bucket(op.api, op.name)
        return name

    def _refuse_or_go_on(self) -> None:
        if self._state.on_error is OnError.REFUSE:
            raise self._state.unavailable() from None


def parse_rate(header_value: str) -> float | None:
    """An ``x-amzn-RateLimit-Limit`` value taken as a rate, or None if it can't be one."""
    try:
        rate = float(header_value.strip())
    except ValueError:
        return None
    return rate if math.isfinite(rate) and MIN_LIMIT_PER_S <= rate <= MAX_LIMIT_PER_S else None
