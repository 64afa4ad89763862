"""The shared token buckets against a real redis-server: several replicas, one quota."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from proxy.fleet.buckets import SharedBuckets
from proxy.fleet.store import RETRY_INTERVAL_S, OnError, SharedState, SharedStateDown
from proxy.forwarding.ratelimit import Reservation
from tests.support.clock import FakeClock
from tests.support.redis_server import (
    REDIS_PASSWORD,
    RedisServer,
    redis_server_binary,
)

TIMEOUT_S = 0.25
GO = Reservation(True, 0.0)
Replicas = Callable[..., Awaitable[list[SharedState]]]


@pytest.fixture
async def replicas() -> AsyncIterator[Replicas]:
    """Makes N SharedStates on one Redis, as N proxy processes would hold, with one prefix."""
    made: list[SharedState] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    async def make(server: RedisServer, count: int = 1, **options: object) -> list[SharedState]:
        states = [
            SharedState.from_url(server.url, prefix, TIMEOUT_S, OnError.LOCAL, **options)  # type: ignore[arg-type]
            for _ in range(count)
        ]
        made.extend(states)
        return states

    yield make
    for state in made:
        await state.close()


def key(state: SharedState, operation: str = "getOrders") -> str:
    return f"{state.key_prefix}:{{seller}}:na:bucket:orders:{operation}"


async def test_four_replicas_never_send_more_than_burst_plus_rate_times_elapsed(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    rate, burst = 20.0, 5.0
    states = await replicas(redis_server, 4)
    buckets = [SharedBuckets(state) for state in states]
    bucket_key = key(states[0])
    started = time.monotonic()

    async def one(index: int) -> float | None:
        asked = time.monotonic()
        taken, wait = await buckets[index % 4].reserve(bucket_key, rate, burst, max_wait_s=2.0)
        return asked + wait if taken else None

    departures = await asyncio.gather(*(one(index) for index in range(200)))
    sent = sorted(departure for departure in departures if departure is not None)
    # Everything that could leave within the 2 s wait did, and nothing more: the allowance
    # over the first 2 s is burst + rate x 2 = 45, each token reserved once, in order.
    assert 40 <= len(sent) <= burst + rate * (time.monotonic() - started + 2.0)
    for count, departure in enumerate(sent, start=1):
        allowed = burst + rate * (departure - started) + 1e-3 * rate  # 1 ms of clock rounding
        assert count <= allowed, f"request {count} left at {departure - started:.3f} s"


async def test_a_bucket_refuses_without_taking_when_the_wait_is_too_long(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    (state,) = await replicas(redis_server)
    buckets = SharedBuckets(state)
    bucket_key = key(state)
    reservations = [await buckets.reserve(bucket_key, 1.0, 2.0, max_wait_s=0.0) for _ in range(3)]
    assert reservations[:2] == [GO, GO]
    refused, retry_after = reservations[2]
    assert not refused
    assert 0.5 < retry_after <= 1.0  # one token's refill away
    retried, retry_after = await buckets.reserve(bucket_key, 1.0, 2.0, max_wait_s=0.0)
    assert not retried
    assert 0.5 < retry_after <= 1.0  # the refusal took nothing


async def test_a_learned_rate_is_the_rate_of_every_replica(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    first, second = (SharedBuckets(state) for state in await replicas(redis_server, 2))
    bucket_key = key((await replicas(redis_server))[0])
    assert await first.reserve(bucket_key, 10.0, 1.0, max_wait_s=0.0) == GO
    await first.learn_rate(bucket_key, 0.5, 1.0)  # Amazon says 0.5/s, not the plan's 10/s
    taken, wait = await second.reserve(bucket_key, 10.0, 1.0, max_wait_s=10.0)
    assert taken
    assert 1.8 < wait <= 2.0  # the next token at 0.5/s, not in 0.1 s


async def test_an_amazon_429_on_one_replica_holds_back_the_others(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    seen_429, other = (SharedBuckets(state) for state in await replicas(redis_server, 2))
    bucket_key = key((await replicas(redis_server))[0])
    assert await other.reserve(bucket_key, 10.0, 10.0, max_wait_s=0.0) == GO
    await seen_429.throttled(bucket_key, 10.0, 10.0, delay_s=2.0)
    assert not (await other.reserve(bucket_key, 10.0, 10.0, max_wait_s=0.5)).taken
    taken, wait = await other.reserve(bucket_key, 10.0, 10.0, max_wait_s=5.0)
    assert taken
    assert 1.8 < wait <= 2.0


async def test_buckets_expire_once_full_again_so_idle_keys_leave_redis(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    (state,) = await replicas(redis_server)
    bucket_key = key(state)
    await SharedBuckets(state).reserve(bucket_key, 1.0, 5.0, max_wait_s=0.0)
    ttl_ms = await state.client.pttl(bucket_key)
    assert 3600_000 < ttl_ms <= 3601_000 + 1000  # full again in 1 s, then kept an hour


async def test_a_flushed_redis_loads_the_script_again_and_starts_the_bucket_full(
    own_redis_server: RedisServer, replicas: Replicas
) -> None:
    (state,) = await replicas(own_redis_server)
    buckets = SharedBuckets(state)
    bucket_key = key(state)
    assert await buckets.reserve(bucket_key, 1.0, 1.0, max_wait_s=0.0) == GO
    assert not (await buckets.reserve(bucket_key, 1.0, 1.0, max_wait_s=0.0)).taken
    own_redis_server.flush()  # keys and scripts gone: EVALSHA answers NOSCRIPT
    assert await buckets.reserve(bucket_key, 1.0, 1.0, max_wait_s=0.0) == GO
    assert state.healthy


async def test_a_burst_pipelined_into_a_flushed_redis_takes_each_token_once(
    own_redis_server: RedisServer, replicas: Replicas
) -> None:
    (state,) = await replicas(own_redis_server)
    buckets = SharedBuckets(state)
    bucket_key = key(state)
    assert await buckets.reserve(bucket_key, 0.01, 5.0, max_wait_s=0.0) == GO
    own_redis_server.flush()
    reservations = await asyncio.gather(
        *(buckets.reserve(bucket_key, 0.01, 5.0, max_wait_s=0.0) for _ in range(12))
    )
    assert reservations.count(GO) == 5
    assert sum(not reservation.taken for reservation in reservations) == 7
    assert state.healthy


async def test_redis_stopped_fails_fast_warns_once_and_is_shared_again_when_back(
    own_redis_server: RedisServer, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    health: list[bool] = []
    (state,) = await replicas(own_redis_server, clock=clock, on_health=health.append)
    buckets = SharedBuckets(state)
    bucket_key = key(state)
    assert await buckets.reserve(bucket_key, 1.0, 5.0, max_wait_s=0.0) == GO

    own_redis_server.stop()
    started = time.monotonic()
    for attempt in range(5):
        if attempt:
            clock.advance(RETRY_INTERVAL_S)  # each call after the interval probes Redis again
        with pytest.raises(SharedStateDown):
            await buckets.reserve(bucket_key, 1.0, 5.0, max_wait_s=0.0)
    assert time.monotonic() - started < 5 * TIMEOUT_S + 2.0
    assert not state.healthy
    assert health == [False]
    warnings = [
        record
        for record in caplog.records
        if record.name == "proxy.fleet.store" and record.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1, "one warning a minute, not one per request"
    assert REDIS_PASSWORD not in warnings[0].getMessage()

    own_redis_server.start()
    with pytest.raises(SharedStateDown):  # within the interval, Redis is not asked
        await buckets.reserve(bucket_key, 1.0, 5.0, max_wait_s=0.0)
    clock.advance(RETRY_INTERVAL_S)
    assert await buckets.reserve(bucket_key, 1.0, 5.0, max_wait_s=0.0) == GO
    assert state.healthy
    assert health == [False, True]


async def test_a_restarted_redis_is_used_again_at_once_on_a_new_connection(
    own_redis_server: RedisServer, replicas: Replicas
) -> None:
    (state,) = await replicas(own_redis_server)
    buckets = SharedBuckets(state)
    bucket_key = key(state)
    assert await buckets.reserve(bucket_key, 1.0, 5.0, max_wait_s=0.0) == GO
    own_redis_server.restart()  # the connection the buckets hold is closed by the old server
    assert await buckets.reserve(bucket_key, 1.0, 5.0, max_wait_s=0.0) == GO
    assert state.healthy


async def test_a_hung_redis_costs_each_waiting_call_at_most_its_timeout_then_recovers(
    own_redis_server: RedisServer, replicas: Replicas
) -> None:
    clock = FakeClock()
    (state,) = await replicas(own_redis_server, clock=clock)
    buckets = SharedBuckets(state)
    bucket_key = key(state)
    assert await buckets.reserve(bucket_key, 1.0, 50.0, max_wait_s=0.0) == GO
    own_redis_server.pause()  # accepts, never answers
    try:
        started = time.monotonic()

        async def later(delay_s: float) -> Reservation:
            await asyncio.sleep(delay_s)  # some calls queue behind the batch on its way
            return await buckets.reserve(bucket_key, 1.0, 50.0, max_wait_s=0.0)

        outcomes = await asyncio.gather(
            *(later(index * 0.02) for index in range(10)), return_exceptions=True
        )
        # The watchdog looks every timeout / 4: a call waits at most 1.25 x the timeout.
        assert time.monotonic() - started < TIMEOUT_S * 1.25 + 0.5
        assert all(isinstance(outcome, SharedStateDown) for outcome in outcomes), outcomes
        assert not state.healthy
    finally:
        own_redis_server.resume()
    clock.advance(RETRY_INTERVAL_S)
    assert await buckets.reserve(bucket_key, 1.0, 50.0, max_wait_s=0.0) == GO
    assert state.healthy


def test_without_redis_server_a_developer_is_told_how_to_install_and_ci_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server anywhere
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        redis_server_binary()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        redis_server_binary()
