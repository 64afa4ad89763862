"""The limiter and credential fetches of a proxy with shared state, against a real Redis:
shared while Redis answers, this process's own (or 503) when it doesn't."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.credentials.refreshable import Expiring
from proxy.errors import SharedStateUnavailable
from proxy.fleet.buckets import SharedBuckets
from proxy.fleet.credentials import SharedFetch
from proxy.fleet.keys import FleetKeys
from proxy.fleet.limiter import FleetLimiter, parse_rate, plan_of
from proxy.fleet.store import OnError, SharedState
from proxy.fleet.tokens import SharedTokens, TokenCipher
from proxy.forwarding.operations import Operation, OperationIndex
from proxy.forwarding.ratelimit import RateLimiter, Reservation
from proxy.secret import Secret
from tests.support.redis_server import REDIS_PASSWORD, RedisServer

TIMEOUT_S = 0.25
GET_ORDERS = OperationIndex().match("GET", "/orders/v0/orders")
LOCAL_KEY = ("orders", "getOrders")
GO = Reservation(True, 0.0)


Make = Callable[..., SharedState]


@pytest.fixture
async def make_state() -> AsyncIterator[Make]:
    states: list[SharedState] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def make(server: RedisServer, on_error: OnError = OnError.LOCAL) -> SharedState:
        state = SharedState.from_url(server.url, prefix, TIMEOUT_S, on_error)
        states.append(state)
        return state

    yield make
    for state in states:
        await state.close()


def limiter(state: SharedState, local_share: float = 1.0) -> FleetLimiter:
    keys = FleetKeys(state.key_prefix, "seller", "na-sandbox")
    local = RateLimiter(time.monotonic, share=local_share, sandbox=True)
    return FleetLimiter(SharedBuckets(state), keys, state, local, sandbox=True)


def test_the_plan_is_the_sandbox_s_or_the_operation_s_and_never_stops_a_bucket() -> None:
    assert GET_ORDERS is not None
    assert plan_of(GET_ORDERS, sandbox=True) == (5.0, 15.0)
    assert plan_of(GET_ORDERS, sandbox=False) == (GET_ORDERS.rate_per_s, GET_ORDERS.burst)
    assert plan_of(None, sandbox=True) is None
    no_plan = Operation("x", "y", "GET", "/x", None, None, False, False, None)
    assert plan_of(no_plan, sandbox=False) is None
    slow = Operation("x", "y", "GET", "/x", 1e-9, 1, False, False, None)
    assert plan_of(slow, sandbox=False) == (1 / 3600, 1.0)
    assert parse_rate("0.0167") == 0.0167
    for bad in ("nan", "inf", "0", "-1", "1e9", "fast"):
        assert parse_rate(bad) is None


async def test_two_replicas_spend_one_sandbox_burst(
    redis_server: RedisServer, make_state: Make
) -> None:
    first, second = limiter(make_state(redis_server)), limiter(make_state(redis_server))
    reservations = [
        await replica.reserve(GET_ORDERS, LOCAL_KEY, max_wait_s=0.0)
        for _ in range(10)
        for replica in (first, second)
    ]
    assert reservations.count(GO) == 15  # the sandbox's burst, once for both
    refused = [reservation for reservation in reservations if not reservation.taken]
    assert len(refused) == 5
    assert all(0.0 < retry_after <= 0.2 for _, retry_after in refused)  # 5/s


async def test_a_rate_one_replica_learns_slows_the_other(
    redis_server: RedisServer, make_state: Make
) -> None:
    first, second = limiter(make_state(redis_server)), limiter(make_state(redis_server))
    for _ in range(15):
        await first.reserve(GET_ORDERS, LOCAL_KEY, max_wait_s=0.0)
    assert not await first.observe_limit(GET_ORDERS, LOCAL_KEY, "0.5")
    taken, wait = await second.reserve(GET_ORDERS, LOCAL_KEY, max_wait_s=10.0)
    assert taken
    assert 1.5 < wait <= 2.0  # a token every 2 s now, not every 0.2 s


async def test_a_learned_rate_lost_in_redis_is_told_again_by_a_later_answer(
    redis_server: RedisServer, make_state: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("proxy.fleet.buckets.RESEND_LEARNED_S", 0.05)
    state = make_state(redis_server)
    replica = limiter(state)
    assert GET_ORDERS is not None
    bucket = FleetKeys(state.key_prefix, "seller", "na-sandbox").bucket(
        GET_ORDERS.api, GET_ORDERS.name
    )
    await replica.observe_limit(GET_ORDERS, LOCAL_KEY, "0.5")
    assert await state.client.hget(bucket, "learned") == b"0.5"
    await state.client.delete(bucket)  # flushed, or expired after an idle hour
    await replica.observe_limit(GET_ORDERS, LOCAL_KEY, "0.5")
    assert await state.client.hget(bucket, "learned") is None  # repeated within the interval
    await asyncio.sleep(0.1)
    await replica.observe_limit(GET_ORDERS, LOCAL_KEY, "0.5")
    assert await state.client.hget(bucket, "learned") == b"0.5"


async def test_an_amazon_429_makes_every_replica_wait(
    redis_server: RedisServer, make_state: Make
) -> None:
    first, second = limiter(make_state(redis_server)), limiter(make_state(redis_server))
    await first.throttled(GET_ORDERS, delay_s=3.0)
    taken, retry_after = await second.reserve(GET_ORDERS, LOCAL_KEY, max_wait_s=1.0)
    assert not taken
    assert 2.5 < retry_after <= 3.0


async def test_redis_down_with_local_falls_back_to_this_process_s_own_buckets(
    own_redis_server: RedisServer, make_state: Make
) -> None:
    replica = limiter(make_state(own_redis_server), local_share=0.5)
    own_redis_server.stop()
    reservations = [await replica.reserve(GET_ORDERS, LOCAL_KEY, max_wait_s=0.0) for _ in range(10)]
    # The local bucket of a worker that owns half the quota: half the burst, then refusals.
    assert reservations.count(GO) == 7
    assert all(not taken and retry_after > 0 for taken, retry_after in reservations[7:])
    await replica.throttled(GET_ORDERS, delay_s=1.0)  # said to nobody, and no error
    assert not await replica.observe_limit(GET_ORDERS, LOCAL_KEY, "1.0")


async def test_redis_down_with_refuse_is_503_shared_state_unavailable(
    own_redis_server: RedisServer, make_state: Make
) -> None:
    replica = limiter(make_state(own_redis_server, OnError.REFUSE))
    own_redis_server.stop()
    with pytest.raises(SharedStateUnavailable) as refused:
        await replica.reserve(GET_ORDERS, LOCAL_KEY, max_wait_s=0.0)
    assert refused.value.status == 503
    assert REDIS_PASSWORD not in refused.value.message + refused.value.details


async def test_a_shared_fetch_goes_alone_or_refuses_when_redis_is_down(
    own_redis_server: RedisServer, make_state: Make
) -> None:
    calls: list[str] = []

    async def fetch() -> Expiring[Secret]:
        calls.append("fetched")
        return Expiring(Secret("Atza|alone"), time.time() + 3600)

    cipher = TokenCipher(Secret("key-for-tests-of-the-shared-fetch"))
    local_state = make_state(own_redis_server)
    refuse_state = make_state(own_redis_server, OnError.REFUSE)
    local = SharedFetch(SharedTokens(local_state, cipher), local_state, "k:lwa", fetch, 5.0)
    refuse = SharedFetch(SharedTokens(refuse_state, cipher), refuse_state, "k:lwa", fetch, 5.0)
    assert (await local()).value == Secret("Atza|alone")
    assert calls == ["fetched"]
    own_redis_server.stop()
    assert (await local()).value == Secret("Atza|alone")
    assert calls == ["fetched", "fetched"]
    with pytest.raises(SharedStateUnavailable):
        await refuse()
    assert len(calls) == 2
