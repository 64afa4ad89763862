"""The shared credential cache against a real redis-server: one fetch for the fleet, encrypted."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.credentials.refreshable import Expiring
from proxy.fleet.keys import FleetKeys, lock_key, seller_id
from proxy.fleet.store import OnError, SharedState, SharedStateDown
from proxy.fleet.tokens import SharedToken, SharedTokens, TokenCipher
from proxy.secret import Secret
from tests.support.redis_server import RedisServer

TIMEOUT_S = 0.25
KEY = Secret("a-long-random-encryption-key-for-tests")
TOKEN = "Atza|shared-token-for-the-whole-fleet"


Replicas = Callable[..., list[SharedTokens]]


@pytest.fixture
async def replicas() -> AsyncIterator[Callable[..., list[SharedTokens]]]:
    """N SharedTokens on one Redis (as N proxy processes), each with its own connection."""
    states: list[SharedState] = []

    def make(server: RedisServer, count: int = 1, key: Secret = KEY) -> list[SharedTokens]:
        made = [
            SharedState.from_url(server.url, "test", TIMEOUT_S, OnError.LOCAL) for _ in range(count)
        ]
        states.extend(made)
        return [SharedTokens(state, TokenCipher(key)) for state in made]

    yield make
    for state in states:
        await state.close()


def lwa_key() -> str:
    keys = FleetKeys("test", seller_id("client-id", f"Atzr|{uuid.uuid4().hex}"), "na")
    return keys.lwa_token()


class CountingFetch:
    """A credential source that takes a while and counts its calls."""

    def __init__(self, lifetime_s: float = 3600.0, takes_s: float = 0.1) -> None:
        self.calls = 0
        self.lifetime_s = lifetime_s
        self.takes_s = takes_s

    async def __call__(self) -> Expiring[Secret]:
        self.calls += 1
        await asyncio.sleep(self.takes_s)
        return Expiring(Secret(f"{TOKEN}-{self.calls}"), time.time() + self.lifetime_s)


async def test_five_replicas_asking_together_make_one_fetch(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    fetch = CountingFetch()
    key = lwa_key()
    got = await asyncio.gather(
        *(tokens.get_or_fetch(key, fetch, wait_s=5.0) for tokens in replicas(redis_server, 5))
    )
    assert fetch.calls == 1
    assert {expiring.value for expiring in got} == {Secret(f"{TOKEN}-1")}


async def test_tokens_in_redis_are_unreadable_without_the_key(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    key = lwa_key()
    (writer,) = replicas(redis_server)
    await writer.get_or_fetch(key, CountingFetch(), wait_s=5.0)
    (reader,) = replicas(redis_server)
    raw = await reader._state.client.get(key)
    assert isinstance(raw, bytes)
    assert TOKEN.encode() not in raw
    assert b"Atz" not in raw
    assert TokenCipher(Secret("another-key")).open(key, raw) is None
    assert TokenCipher(KEY).open(key + "-elsewhere", raw) is None  # bound to its key name
    opened = TokenCipher(KEY).open(key, raw)
    assert opened is not None
    assert opened.token == Secret(f"{TOKEN}-1")


async def test_a_replica_with_another_key_sees_a_miss_and_fetches_never_crashes(
    redis_server: RedisServer, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    key = lwa_key()
    (first,) = replicas(redis_server)
    (other,) = replicas(redis_server, key=Secret("a-different-key-on-one-replica"))
    await first.get_or_fetch(key, CountingFetch(), wait_s=5.0)
    fetch = CountingFetch()
    got = await other.get_or_fetch(key, fetch, wait_s=5.0)
    assert fetch.calls == 1
    assert got.value == Secret(f"{TOKEN}-1")
    assert any("could not be decrypted" in record.getMessage() for record in caplog.records)


async def test_garbage_in_redis_is_a_miss(redis_server: RedisServer, replicas: Replicas) -> None:
    key = lwa_key()
    (tokens,) = replicas(redis_server)
    for garbage in (b"", b"\x01", b"\x01" + b"x" * 40, b"not ours at all"):
        await tokens._state.client.set(key, garbage)
        assert await tokens.read(key) is None


async def test_a_token_in_its_refresh_window_is_fetched_again(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    key = lwa_key()
    (tokens,) = replicas(redis_server)
    now = time.time()
    # An hour-long token 57 minutes old: inside the last 5 minutes, where caches refresh.
    stale = SharedToken(Secret(f"{TOKEN}-old"), now + 180, now - 3420)
    await tokens._state.client.set(key, TokenCipher(KEY).seal(key, stale))
    fetch = CountingFetch()
    got = await tokens.get_or_fetch(key, fetch, wait_s=5.0)
    assert fetch.calls == 1
    assert got.value == Secret(f"{TOKEN}-1")
    assert (await tokens.get_or_fetch(key, fetch, wait_s=5.0)).value == got.value
    assert fetch.calls == 1


async def test_a_lock_holder_that_never_delivers_is_waited_for_only_until_the_timeout(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    key = lwa_key()
    (tokens,) = replicas(redis_server)
    await tokens._state.client.set(lock_key(key), "a replica that died", px=60_000)
    fetch = CountingFetch(takes_s=0.0)
    started = time.monotonic()
    got = await tokens.get_or_fetch(key, fetch, wait_s=0.5)
    assert 0.5 <= time.monotonic() - started < 3.0
    assert fetch.calls == 1
    assert got.value == Secret(f"{TOKEN}-1")


async def test_a_token_sp_api_refused_is_replaced_once_for_the_fleet(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    key = lwa_key()
    first, second = replicas(redis_server, 2)
    fetch = CountingFetch(takes_s=0.0)
    refused = (await first.get_or_fetch(key, fetch, wait_s=5.0)).value
    assert (
        await second.get_or_fetch(key, fetch, wait_s=5.0, refused={Secret("older")})
    ).value == refused
    replaced = await first.get_or_fetch(key, fetch, wait_s=5.0, refused={refused})
    assert replaced.value == Secret(f"{TOKEN}-2")
    # The other replica, told of the same refusal, takes the replacement: no third fetch.
    assert (
        await second.get_or_fetch(key, fetch, wait_s=5.0, refused={refused})
    ).value == replaced.value
    assert fetch.calls == 2


async def test_redis_down_before_a_token_is_in_hand_raises_for_the_caller_to_decide(
    own_redis_server: RedisServer, replicas: Replicas
) -> None:
    key = lwa_key()
    (tokens,) = replicas(own_redis_server)
    own_redis_server.stop()
    fetch = CountingFetch(takes_s=0.0)
    with pytest.raises(SharedStateDown):
        await tokens.get_or_fetch(key, fetch, wait_s=5.0)
    assert fetch.calls == 0


async def test_tokens_are_shared_again_after_a_restart(
    own_redis_server: RedisServer, replicas: Replicas
) -> None:
    key = lwa_key()
    first, second = replicas(own_redis_server, 2)
    fetch = CountingFetch(takes_s=0.0)
    await first.get_or_fetch(key, fetch, wait_s=5.0)
    await second.get_or_fetch(key, fetch, wait_s=5.0)
    assert fetch.calls == 1
    own_redis_server.restart()  # an empty Redis; the pooled connections point at the old one
    await first.get_or_fetch(key, fetch, wait_s=5.0)
    await second.get_or_fetch(key, fetch, wait_s=5.0)
    assert fetch.calls == 2


def test_the_seller_is_named_by_a_hash_never_by_the_token() -> None:
    refresh_token = "Atzr|IwEBIA-a-refresh-token"
    seller = seller_id("amzn1.application-oa2-client.abc", refresh_token)
    keys = FleetKeys("spapi-proxy", seller, "eu")
    names = (
        keys.lwa_token(),
        keys.grantless_token("sellingpartnerapi::notifications"),
        keys.bucket("orders", "getOrder"),
        keys.rdt("GET", "/orders/v0/orders/123-4567890-1234567/address", ("shippingAddress",)),
    )
    for name in names:
        assert refresh_token not in name
        assert "Atzr" not in name
        assert "123-4567890" not in name  # order ids stay out of Redis too
        assert f"{{{seller}}}" in name  # one hash tag: one Cluster slot per seller
    assert seller != seller_id("another-client", refresh_token)
