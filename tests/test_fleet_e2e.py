"""Several `spapi-proxy run` processes, one Redis, one fake Amazon: the fleet acts as one proxy.

The fake Amazon plays LWA (counting token calls, answering slowly so that replicas starting
together overlap) and SP-API (a token bucket of its own that answers 429 when exceeded, and a
record of when each request arrived).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.moto_sts import free_port
from tests.support.redis_server import REDIS_PASSWORD, RedisServer

SCRIPT = str(Path(sys.executable).parent / "spapi-proxy")
ORDERS = "/orders/v0/orders?CreatedAfter=2024-01-01&MarketplaceIds=ATVPDKIKX0DER"
CLIENT_ID = "amzn1.application-oa2-client.fleet"
CLIENT_SECRET = "fleet-client-secret-never-logged"
REFRESH_TOKEN = "Atzr|fleet-refresh-token-never-logged"
ENCRYPTION_KEY = "fleet-encryption-key-0123456789abcdef"
TOKEN_PREFIX = "Atza|fleet-access-token-"
RDT_PREFIX = "Atz.sprdt|fleet-rdt-"
# The sandbox's plan, which the proxy applies to every operation with upstream.sandbox on.
RATE, BURST = 5.0, 15
JITTER_S = 0.1


@dataclass
class FakeAmazon:
    """LWA and SP-API: counts what it receives, enforces the sandbox's bucket itself."""

    lwa_delay_s: float = 0.3
    lwa_calls: int = 0
    rdt_calls: int = 0
    arrivals: list[float] = field(default_factory=list)  # monotonic times of SP-API calls
    refused: list[float] = field(default_factory=list)  # times it answered 429
    answer_429s: int = 0  # the next this many SP-API calls get 429 whatever the bucket
    tokens: float = float(BURST)
    updated: float = field(default_factory=time.monotonic)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/auth/o2/token", self.token)
        app.router.add_get("/orders/v0/orders", self.orders)
        app.router.add_post("/tokens/2021-03-01/restrictedDataToken", self.rdt)
        app.router.add_get("/orders/v0/orders/{order}/address", self.address)
        return app

    async def rdt(self, request: web.Request) -> web.Response:
        self.rdt_calls += 1
        await asyncio.sleep(self.lwa_delay_s)
        document = {"restrictedDataToken": f"{RDT_PREFIX}{self.rdt_calls}", "expiresIn": 3600}
        return web.json_response(document)

    async def address(self, request: web.Request) -> web.Response:
        if not request.headers.get("x-amz-access-token", "").startswith(RDT_PREFIX):
            return web.json_response({"errors": [{"code": "Unauthorized"}]}, status=403)
        return web.json_response({"payload": {"ShippingAddress": {"City": "Seattle"}}})

    async def token(self, request: web.Request) -> web.Response:
        self.lwa_calls += 1
        await asyncio.sleep(self.lwa_delay_s)
        document = {
            "access_token": f"{TOKEN_PREFIX}{self.lwa_calls}",
            "token_type": "bearer",
            "expires_in": 3600,
        }
        return web.json_response(document)

    async def orders(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.updated) * RATE)
        self.updated = now
        # The proxies time a request's departure, this bucket its arrival: scheduling on a busy
        # machine moves one against the other by some milliseconds, so a token may be short
        # by what JITTER_S of refill earns.
        if self.answer_429s or self.tokens < 1.0 - RATE * JITTER_S:
            self.answer_429s = max(0, self.answer_429s - 1)
            self.refused.append(now)
            body = {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota"}]}
            return web.json_response(body, status=429)
        self.tokens -= 1
        self.arrivals.append(now)
        return web.json_response({"payload": {"Orders": []}})


@pytest.fixture
async def amazon() -> AsyncIterator[tuple[FakeAmazon, str]]:
    fake = FakeAmazon()
    server = TestServer(fake.app())
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@dataclass
class Proxy:
    port: int
    process: asyncio.subprocess.Process
    log: bytes = b""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


StartFleet = Callable[..., Awaitable[list[Proxy]]]


@pytest.fixture
async def start_fleet(tmp_path: Path) -> AsyncIterator[StartFleet]:
    started: list[Proxy] = []

    async def start(
        amazon_url: str,
        redis: RedisServer,
        count: int,
        *,
        on_error: str = "local",
        max_wait_s: float = 10.0,
        retries: int = 0,
        workers: int = 1,
        prefix: str = "fleet",
        redis_timeout_s: float = 0.25,
    ) -> list[Proxy]:
        proxies = []
        for number in range(count):
            port = free_port()
            config = tmp_path / f"proxy-{number}-{port}.yaml"
            config.write_text(
                f"""
listen:
  port: {port}
  workers: {workers}
upstream:
  endpoint: {amazon_url}
lwa:
  client_id: {CLIENT_ID}
  client_secret: ${{LWA_CLIENT_SECRET}}
  refresh_token: ${{LWA_REFRESH_TOKEN}}
  token_url: {amazon_url}/auth/o2/token
rate_limits:
  max_wait_s: {max_wait_s}
  retries: {retries}
shared_state:
  redis_url: ${{REDIS_URL}}
  key_prefix: {prefix}
  timeout_s: {redis_timeout_s}
  on_error: {on_error}
  encryption_key: ${{SHARED_STATE_KEY}}
"""
            )
            config.chmod(0o600)
            environment = {
                **os.environ,
                "LWA_CLIENT_SECRET": CLIENT_SECRET,
                "LWA_REFRESH_TOKEN": REFRESH_TOKEN,
                "REDIS_URL": redis.url,
                "SHARED_STATE_KEY": ENCRYPTION_KEY,
            }
            process = await asyncio.create_subprocess_exec(
                SCRIPT,
                "run",
                "--config",
                str(config),
                "--log-level",
                "DEBUG",
                env=environment,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            proxies.append(Proxy(port, process))
        started.extend(proxies)
        await asyncio.gather(*(wait_healthy(proxy) for proxy in proxies))
        return proxies

    yield start
    for proxy in started:
        if proxy.process.returncode is None:
            proxy.process.send_signal(signal.SIGTERM)
    for proxy in started:
        output, _ = await asyncio.wait_for(proxy.process.communicate(), timeout=30)
        proxy.log += output
        secrets = (CLIENT_SECRET, REFRESH_TOKEN, ENCRYPTION_KEY, REDIS_PASSWORD, TOKEN_PREFIX)
        for secret in (*secrets, RDT_PREFIX):
            assert secret.encode() not in proxy.log, f"a secret in the log of :{proxy.port}"


async def wait_healthy(proxy: Proxy) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proxy.process.returncode is None, "a proxy exited during start-up"
            try:
                async with session.get(f"{proxy.base}/_proxy/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("a proxy did not become healthy within 30 s")


@dataclass(frozen=True)
class Answer:
    status: int
    error: str | None
    took_s: float


async def get(session: aiohttp.ClientSession, proxy: Proxy, path: str = ORDERS) -> Answer:
    started = time.monotonic()
    async with session.get(proxy.base + path) as response:
        await response.read()
        return Answer(
            response.status,
            response.headers.get("x-spapi-proxy-error"),
            time.monotonic() - started,
        )


async def ready(session: aiohttp.ClientSession, proxy: Proxy) -> tuple[int, dict[str, object]]:
    async with session.get(f"{proxy.base}/_proxy/ready") as response:
        return response.status, json.loads(await response.read())


async def metrics(session: aiohttp.ClientSession, proxy: Proxy) -> str:
    async with session.get(f"{proxy.base}/_proxy/metrics") as response:
        return (await response.read()).decode()


async def test_four_proxies_send_amazon_no_more_than_one_bucket_allows(
    amazon: tuple[FakeAmazon, str], redis_server: RedisServer, start_fleet: StartFleet
) -> None:
    fake, url = amazon
    # A generous Redis timeout: on a busy machine a call slower than 0.25 s would send a replica
    # to its own local bucket (on_error: local, as designed), and four local buckets overshoot.
    proxies = await start_fleet(
        url, redis_server, 4, max_wait_s=1.0, prefix="burst", redis_timeout_s=2.0
    )
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(get(session, proxy, "/_proxy/ready") for proxy in proxies))
        started = time.monotonic()
        answers = await asyncio.gather(
            *(get(session, proxies[number % 4]) for number in range(200))
        )
        elapsed = time.monotonic() - started
    statuses = sorted({answer.status for answer in answers})
    assert statuses == [200, 429], statuses
    assert not fake.refused, "Amazon answered 429: the replicas overshot the bucket"
    sent = len(fake.arrivals)
    assert BURST <= sent <= BURST + RATE * elapsed + 1
    assert sum(answer.status == 200 for answer in answers) == sent
    local = [answer for answer in answers if answer.status == 429]
    assert {answer.error for answer in local} == {"QuotaExceeded"}  # answered by the proxies
    assert max(answer.took_s for answer in answers) < 10


async def test_four_proxies_started_together_make_one_lwa_call(
    amazon: tuple[FakeAmazon, str], redis_server: RedisServer, start_fleet: StartFleet
) -> None:
    fake, url = amazon
    proxies = await start_fleet(url, redis_server, 4, prefix="one-lwa-call")
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(get(session, proxy) for proxy in proxies))
    assert [answer.status for answer in answers] == [200] * 4
    assert fake.lwa_calls == 1


async def test_an_amazon_429_on_one_proxy_delays_the_next_request_on_another(
    amazon: tuple[FakeAmazon, str], redis_server: RedisServer, start_fleet: StartFleet
) -> None:
    fake, url = amazon
    first, second = await start_fleet(url, redis_server, 2, prefix="shared-429")
    async with aiohttp.ClientSession() as session:
        assert (await get(session, first)).status == 200  # tokens fetched, buckets made
        fake.answer_429s = 1
        assert (await get(session, first)).status == 429  # Amazon's own (retries: 0)
        answer = await get(session, second)
    assert answer.status == 200
    # The backoff after a 429 is 1 s plus up to 25 % jitter, for every replica.
    assert fake.arrivals[-1] - fake.refused[-1] >= 0.9
    assert answer.took_s >= 0.8


async def test_redis_stopped_local_serves_refuse_503s_and_both_are_shared_again_after(
    amazon: tuple[FakeAmazon, str], own_redis_server: RedisServer, start_fleet: StartFleet
) -> None:
    fake, url = amazon
    local, refuse = await start_fleet(url, own_redis_server, 1, on_error="local", prefix="a") + (
        await start_fleet(url, own_redis_server, 1, on_error="refuse", prefix="b")
    )
    async with aiohttp.ClientSession() as session:
        assert (await get(session, local)).status == 200
        assert (await get(session, refuse)).status == 200
        assert await ready(session, local) == (200, {"status": "ready", "shared_state": "ok"})

        own_redis_server.stop()
        during = await asyncio.gather(
            *(get(session, proxy) for proxy in (local, refuse) for _ in range(3))
        )
        assert [answer.status for answer in during[:3]] == [200] * 3
        assert [(answer.status, answer.error) for answer in during[3:]] == [
            (503, "SharedStateUnavailable")
        ] * 3
        assert max(answer.took_s for answer in during) < 5  # bounded by timeout_s, not hung
        assert await ready(session, local) == (
            200,
            {"status": "ready", "shared_state": "degraded"},
        )
        assert "spapi_proxy_shared_state_degraded 1.0" in await metrics(session, local)
        status, document = await ready(session, refuse)
        assert (status, document["shared_state"]) == (503, "degraded")

        own_redis_server.start()
        await asyncio.sleep(1.5)  # past the interval in which a down Redis is left alone
        after = [await get(session, proxy) for proxy in (local, refuse, local, refuse)]
        assert [answer.status for answer in after[2:]] == [200, 200]
        assert await ready(session, local) == (200, {"status": "ready", "shared_state": "ok"})
        assert "spapi_proxy_shared_state_degraded 0.0" in await metrics(session, local)
    assert fake.lwa_calls >= 1


async def test_tokens_in_redis_are_not_readable_without_the_key(
    amazon: tuple[FakeAmazon, str], redis_server: RedisServer, start_fleet: StartFleet
) -> None:
    _, url = amazon
    (proxy,) = await start_fleet(url, redis_server, 1, prefix="sealed")
    async with aiohttp.ClientSession() as session:
        assert (await get(session, proxy)).status == 200
    keys = redis_server.command(b"KEYS", b"sealed:*")
    assert b":lwa" in keys
    assert REFRESH_TOKEN.encode() not in keys
    lwa_key = next(line for line in keys.split(b"\r\n") if line.endswith(b":lwa"))
    stored = redis_server.command(b"GET", lwa_key)
    assert stored.startswith(b"$")
    assert TOKEN_PREFIX.encode() not in stored
    assert b"Atz" not in stored


async def test_two_workers_on_redis_share_the_bucket_instead_of_halving_it(
    amazon: tuple[FakeAmazon, str], redis_server: RedisServer, start_fleet: StartFleet
) -> None:
    fake, url = amazon
    (proxy,) = await start_fleet(url, redis_server, 1, workers=2, max_wait_s=0.0, prefix="w2")
    connector = aiohttp.TCPConnector(force_close=True)  # new connections: both workers serve
    async with aiohttp.ClientSession(connector=connector) as session:
        answers = await asyncio.gather(*(get(session, proxy) for _ in range(40)))
    sent = sum(answer.status == 200 for answer in answers)
    # Split 1/N, two workers would each stop at 7 (15 / 2); sharing, they stop at 15 together.
    assert BURST <= sent <= BURST + 2
    assert not fake.refused


async def test_the_same_rdt_asked_on_three_proxies_is_one_tokens_api_call(
    amazon: tuple[FakeAmazon, str], redis_server: RedisServer, start_fleet: StartFleet
) -> None:
    fake, url = amazon
    proxies = await start_fleet(url, redis_server, 3, prefix="one-rdt")
    address = "/orders/v0/orders/902-1234567-1234567/address"
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(get(session, proxy, address) for proxy in proxies))
    assert [answer.status for answer in answers] == [200] * 3
    assert fake.rdt_calls == 1
    keys = redis_server.command(b"KEYS", b"one-rdt:*")
    assert b":rdt:" in keys
    assert b"902-1234567" not in keys  # the path is hashed
