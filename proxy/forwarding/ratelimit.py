"""Client-side rate limiting: Amazon's token buckets mirrored per key, and 429 backoff delays.

Amazon meters each operation per (application, selling partner) with a token bucket: ``rate``
tokens a second, at most ``burst`` saved, starting full (docs/sp-api-facts.md §7). Mirroring that
bucket lets the proxy wait, or answer 429 itself, before a request would spend Amazon's quota.

Nothing here sleeps or does I/O. :meth:`RateLimiter.reserve` returns how long to wait and
takes the token at once, so concurrent callers queue in order; the caller awaits the wait.

Several worker processes (``listen.workers: N``) *split* the quota: each worker's buckets get
``share = 1/N`` of the rate and burst, so together they can never exceed Amazon's bucket.
Sharing one bucket needs an external store on every request (a round trip, and a new way to
fail): that is ``shared_state`` (Redis, ``proxy/fleet/``), behind :class:`SharedQuota` below,
for workers and for proxies on other machines alike. Without it, when one worker has all of an
operation's traffic it gets 1/N of the quota and throttles early, which is safe (the proxy's
own 429 never costs Amazon quota) rather than fast.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable
from typing import NamedTuple, Protocol

from cachetools import LRUCache

from proxy.forwarding.operations import Operation

SANDBOX_RATE_PER_S = 5.0  # the sandbox throttles every operation alike (docs/sp-api-facts.md §7)
SANDBOX_BURST = 15
# Float sums of rate * elapsed land a hair under a whole token (with wall-clock timestamps near
# 1.7e9 the clock itself only resolves ~0.2 µs). Waits shorter than this are rounding, not
# throttling: report them as 0.0 ("go now") rather than as a sleep of a few nanoseconds.
_ROUNDING_S = 1e-6
# The x-amzn-RateLimit-Limit values taken as a rate. SP-API's plans run from 0.0056/s to 80/s;
# outside this range a value is a broken or hostile answer, and following it would either stop
# an operation for days (nothing then reaches Amazon, so no corrected value could ever arrive)
# or switch the limit off.
MIN_LIMIT_PER_S = 0.0001
MAX_LIMIT_PER_S = 10_000.0
# A bucket refills at least a token this often, whatever the plan, share or header says: the
# longest anyone waits for a token is bounded, and at least one request in this time reaches
# Amazon, whose answer can correct the rate. Longer than the slowest plan's interval (0.0056/s,
# a token every 180 s) even when 16 workers split it (48 min).
SLOWEST_REFILL_S = 3600.0

Clock = Callable[[], float]


class TokenBucket:
    """Amazon's model: ``rate_per_s`` tokens a second, capacity ``burst``, starts full.

    Reservations may take the level below zero: the debt is what queued callers are waiting
    for, so the n-th caller past the burst waits n / rate seconds.
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Clock) -> None:
        if not rate_per_s > 0 or not burst >= 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s = _bounded_rate(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()
        # The last x-amzn-RateLimit-Limit value seen (nearly every answer repeats it: one string
        # comparison then), and whether an unusable one was reported yet.
        self.seen_limit: str | None = None
        self.refused_limit = False

    def reserve(self, max_wait_s: float) -> float | None:
        """Take one token now or later: the seconds to wait, or None (nothing taken) if too long."""
        self._refill()
        wait = self._wait_for_one()
        if wait > max_wait_s:
            return None
        self._tokens -= 1.0
        return wait

    def retry_after(self) -> float:
        """Seconds until one token is free (0.0 when one is free now)."""
        self._refill()
        return self._wait_for_one()

    def adjust_rate(self, rate_per_s: float) -> None:
        """Change the refill rate, keeping the tokens earned so far at the old rate."""
        if not rate_per_s > 0:
            raise ValueError(f"need rate > 0, got {rate_per_s}")
        self._refill()
        self.rate_per_s = _bounded_rate(rate_per_s)

    def _refill(self) -> None:
        now = self._clock()
        # max(0, …): a clock that steps backwards must not drain the bucket
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._updated = now

    def _wait_for_one(self) -> float:
        wait = (1.0 - self._tokens) / self.rate_per_s
        return 0.0 if wait <= _ROUNDING_S else wait


class RateLimiter:
    """One :class:`TokenBucket` per key (e.g. ``(profile, operation)``), created on first use.

    Limits come from the :class:`Operation`'s usage plan, else from ``default_rate`` and
    ``default_burst``; with neither, requests are not limited. ``sandbox=True`` applies the
    sandbox's flat plan (default 5/s, burst 15) to every operation instead. All limits are
    multiplied by ``share`` (see the module docstring).

    Buckets sit in an LRU cache of ``max_buckets`` so stray keys cannot grow memory without
    bound. A bucket evicted and recreated starts full, which could let one extra burst through,
    so ``max_buckets`` should stay well above profiles x operations (370 operations).
    """

    def __init__(
        self,
        clock: Clock,
        default_rate: float | None = None,
        default_burst: int | None = None,
        share: float = 1.0,
        max_buckets: int = 10_000,
        *,
        sandbox: bool = False,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        if sandbox:
            default_rate = SANDBOX_RATE_PER_S if default_rate is None else default_rate
            default_burst = SANDBOX_BURST if default_burst is None else default_burst
        self._clock = clock
        self._default_rate = default_rate
        self._default_burst = default_burst
        self._share = share
        self._sandbox = sandbox
        self._buckets: LRUCache[Hashable, TokenBucket] = LRUCache(maxsize=max_buckets)

    def __len__(self) -> int:
        return len(self._buckets)

    def reserve(self, key: Hashable, op: Operation | None, max_wait_s: float) -> float | None:
        """Seconds to wait before sending (token taken), or None: answer 429 without sending."""
        bucket = self._buckets.get(key)
        if bucket is None:
            limits = self._limits(op)
            if limits is None:
                return 0.0  # no known plan: leave it to Amazon
            bucket = self._buckets[key] = TokenBucket(*limits, self._clock)
        return bucket.reserve(max_wait_s)

    def observe_limit(self, key: Hashable, header_value: str) -> bool:
        """Apply an ``x-amzn-RateLimit-Limit`` value (requests/s, e.g. ``0.0167``) to a bucket.

        Values that are not a number from ``MIN_LIMIT_PER_S`` to ``MAX_LIMIT_PER_S`` are
        ignored: the header is best effort. Returns True the first time a bucket gets such a
        value, so the caller can say so once rather than on every answer. The value is the
        whole application's rate, so this worker takes its ``share`` of it.
        """
        bucket = self._buckets.get(key)
        if bucket is None or header_value == bucket.seen_limit:
            return False
        bucket.seen_limit = header_value
        rate = _parse_rate(header_value)
        if rate is None:
            first = not bucket.refused_limit
            bucket.refused_limit = True
            return first
        rate *= self._share
        if not math.isclose(rate, bucket.rate_per_s):
            bucket.adjust_rate(rate)
        return False

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key``'s bucket has a token (0.0 for keys without a bucket)."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.retry_after()

    def _limits(self, op: Operation | None) -> tuple[float, float] | None:
        rate, burst = self._default_rate, self._default_burst
        # truthiness on purpose: a missing plan (None) and a zero one both mean "use defaults"
        if not self._sandbox and op is not None and op.rate_per_s and op.burst:
            rate, burst = op.rate_per_s, op.burst
        if rate is None or burst is None:
            return None
        # at least one token, or a worker with a small share could never send at all
        return rate * self._share, max(1.0, burst * self._share)


def _parse_rate(header_value: str) -> float | None:
    try:
        rate = float(header_value.strip())
    except ValueError:
        return None
    # NaN compares false, so it is refused here too
    return rate if MIN_LIMIT_PER_S <= rate <= MAX_LIMIT_PER_S else None


def _bounded_rate(rate_per_s: float) -> float:
    return max(rate_per_s, 1.0 / SLOWEST_REFILL_S)


_JITTER = random.Random()  # one generator: seeding a new one costs a getrandom() syscall


def backoff_delay(
    attempt: int, base_s: float = 1.0, cap_s: float = 30.0, rng: random.Random | None = None
) -> float:
    """The delay before retry number ``attempt + 1`` of a 429, as the official SDKs space them.

    ``base_s * 2**attempt`` plus 0-25 % jitter (docs/sp-api-facts.md §7), never more than ``cap_s``.
    The jitter keeps workers throttled together from retrying in lockstep.
    """
    jitter = (rng or _JITTER).uniform(0.0, 0.25)
    return min(cap_s, base_s * 2.0**attempt * (1.0 + jitter))


# Buckets kept outside the process (the fleet's Redis, in proxy/fleet/): what the forwarder asks
# of them. Unlike RateLimiter, every call may wait for the network, so each is a coroutine; an
# implementation falls back to this process's RateLimiter (or refuses) when it can't answer.


class Reservation(NamedTuple):
    taken: bool  # False: the wait would be too long, answer 429 without sending
    seconds: float  # taken: how long to wait before sending; else until a token is free


class SharedQuota(Protocol):
    async def reserve(
        self, op: Operation | None, local_key: Hashable, max_wait_s: float
    ) -> Reservation:
        """A token for this request, in one round trip whether it is taken or refused."""
        ...

    async def observe_limit(self, op: Operation | None, local_key: Hashable, value: str) -> bool:
        """Apply an ``x-amzn-RateLimit-Limit`` value; True the first time one is unusable."""
        ...

    async def throttled(self, op: Operation | None, delay_s: float) -> None:
        """Amazon answered 429: no replica sends this operation for ``delay_s``."""
        ...
