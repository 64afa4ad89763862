"""Sandbox throttling: one token bucket per operation, driven by the injected clock.

By default every operation gets the sandbox's flat limit; with usage plans (``--throttle
models``) each gets its own rate and burst from the table the proxy generates from the models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from proxy.emulator import policy
from proxy.forwarding.operations_table import TABLE

# (METHOD, template with {} for every parameter) -> (rate per second, burst)
Plans = Mapping[tuple[str, str], tuple[float, int]]


def usage_plans() -> dict[tuple[str, str], tuple[float, int]]:
    """Every operation's default usage plan from the models (those that give a numeric one)."""
    return {
        policy.template_key(method, template): (rate, burst)
        for _api, _name, method, template, rate, burst in TABLE
        if rate is not None and burst is not None
    }


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full like Amazon's."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        # max(0, …): a clock that steps backwards must not drain the bucket
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Throttle:
    """Buckets keyed by operation (the sandbox has one application and one seller)."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], plans: Plans | None = None
    ) -> None:
        self.rate = rate
        self._burst = burst
        self._clock = clock
        self._plans: Plans = plans or {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def plan(self, method: str, path_template: str) -> tuple[float, int]:
        return self._plans.get(policy.template_key(method, path_template), (self.rate, self._burst))

    def allow(self, method: str, path_template: str) -> bool:
        key = policy.template_key(method, path_template)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate, burst = self.plan(method, path_template)
            bucket = self._buckets[key] = TokenBucket(rate, burst, self._clock)
        return bucket.take()

    def limit_header(self, method: str, path_template: str) -> str:
        """The ``x-amzn-RateLimit-Limit`` value, formatted as Amazon does (``5.0``, ``0.0167``)."""
        return repr(float(self.plan(method, path_template)[0]))
