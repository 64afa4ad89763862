"""Refreshable: early refresh scaled to the lifetime, single-flight, never an expired value."""

from __future__ import annotations

import asyncio

import pytest

from proxy.credentials.refreshable import Expiring, Refreshable
from proxy.errors import LwaUnavailable
from tests.support.clock import FakeClock


class CountingSource:
    """Issues value-1, value-2, … each living `lifetime` seconds; can be told to fail or stall."""

    def __init__(self, clock: FakeClock, lifetime: float) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def fetch(self) -> Expiring[str]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise LwaUnavailable("LWA is down")
        return Expiring(f"value-{self.calls}", self.clock() + self.lifetime)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


async def test_concurrent_cold_callers_share_one_fetch(clock: FakeClock) -> None:
    source = CountingSource(clock, 3600)
    cached = Refreshable("lwa", source.fetch, clock)
    values = await asyncio.gather(*(cached.get() for _ in range(100)))
    assert set(values) == {"value-1"}
    assert source.calls == 1


async def test_fresh_value_is_reused_without_fetching(clock: FakeClock) -> None:
    source = CountingSource(clock, 3600)
    cached = Refreshable("lwa", source.fetch, clock)
    await cached.get()
    clock.advance(3600 - 301)  # just outside the advisory window (5 min cap)
    assert await cached.get() == "value-1"
    assert source.calls == 1


async def test_advisory_window_refreshes_once_while_callers_keep_the_old_value(
    clock: FakeClock,
) -> None:
    source = CountingSource(clock, 3600)
    cached = Refreshable("lwa", source.fetch, clock)
    await cached.get()
    source.gate = asyncio.Event()  # the refresh stalls until released
    clock.advance(3600 - 200)  # inside advisory (300 s), outside mandatory (60 s)
    values = await asyncio.gather(*(cached.get() for _ in range(20)))
    assert set(values) == {"value-1"}
    await asyncio.sleep(0)
    assert source.calls == 2  # one background refresh, not twenty
    source.gate.set()
    await asyncio.sleep(0.01)
    assert await cached.get() == "value-2"


async def test_mandatory_window_makes_everyone_wait_for_the_new_value(clock: FakeClock) -> None:
    source = CountingSource(clock, 3600)
    cached = Refreshable("lwa", source.fetch, clock)
    await cached.get()
    clock.advance(3600 - 30)  # inside the last minute: the old token must not be sent
    values = await asyncio.gather(*(cached.get() for _ in range(10)))
    assert set(values) == {"value-2"}
    assert source.calls == 2


@pytest.mark.parametrize("lifetime", [3.0, 60.0, 3600.0])
async def test_windows_scale_with_lifetime_and_expired_values_are_never_returned(
    clock: FakeClock, lifetime: float
) -> None:
    source = CountingSource(clock, lifetime)
    cached = Refreshable("lwa", source.fetch, clock)
    issued_expiry: dict[str, float] = {}
    for _ in range(200):
        value = await cached.get()
        current = cached.cached
        assert current is not None
        issued_expiry.setdefault(current.value, current.expires_at)
        assert clock() < issued_expiry[value], "an expired value was returned"
        clock.advance(lifetime / 37)
        await asyncio.sleep(0)
    assert source.calls > 3  # it did refresh along the way


async def test_failed_background_refresh_keeps_serving_the_valid_value(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = CountingSource(clock, 3600)
    cached = Refreshable("lwa", source.fetch, clock)
    await cached.get()
    source.fail = True
    clock.advance(3600 - 200)
    assert await cached.get() == "value-1"
    await asyncio.sleep(0.01)
    assert await cached.get() == "value-1"
    assert "lwa refresh failed" in caplog.text


async def test_failure_with_nothing_valid_is_raised_to_every_waiter(clock: FakeClock) -> None:
    source = CountingSource(clock, 3600)
    source.fail = True
    cached = Refreshable("lwa", source.fetch, clock)
    results = await asyncio.gather(*(cached.get() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(result, LwaUnavailable) for result in results)
    assert source.calls == 1
    source.fail = False
    assert await cached.get() == "value-2"  # recovers without a restart


async def test_invalidate_forgets_only_the_rejected_value(clock: FakeClock) -> None:
    source = CountingSource(clock, 3600)
    cached = Refreshable("lwa", source.fetch, clock)
    first = await cached.get()
    cached.invalidate("some-other-value")
    assert await cached.get() == first
    cached.invalidate(first)
    assert await cached.get() == "value-2"


async def test_a_cancelled_waiter_does_not_cancel_the_shared_refresh(clock: FakeClock) -> None:
    source = CountingSource(clock, 3600)
    source.gate = asyncio.Event()
    cached = Refreshable("lwa", source.fetch, clock)
    quitter = asyncio.create_task(cached.get())
    stayer = asyncio.create_task(cached.get())
    await asyncio.sleep(0)
    quitter.cancel()
    source.gate.set()
    assert await stayer == "value-1"
    assert source.calls == 1
