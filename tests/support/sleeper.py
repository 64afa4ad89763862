"""A sleeper that never sleeps: it moves a FakeClock instead, and remembers what was asked.

The proxy awaits its injected `sleep` for rate-limit waits and 429 backoff; with this one a
test sees those delays at once and the buckets see the time pass.
"""

from __future__ import annotations

import asyncio

from tests.support.clock import FakeClock


class FakeSleeper:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        # Concurrent sleepers overlap as in real time: the clock ends at the latest wake-up,
        # not at the sum of the delays.
        wake_at = self.clock.now + delay
        await asyncio.sleep(0)
        self.clock.now = max(self.clock.now, wake_at)
