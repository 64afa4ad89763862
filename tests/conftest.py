"""Shared fixtures: the emulator as Amazon (LWA + SP-API), moto as STS, the proxy under test."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp.test_utils import TestServer

from proxy.config.settings import (
    AwsSettings,
    ListenSettings,
    LwaSettings,
    RateLimitSettings,
    Settings,
    UpstreamSettings,
)
from proxy.emulator import EMULATOR_STATE, EmulatorConfig, EmulatorState, create_emulator_app
from proxy.emulator.sigv4 import KeyMaterial
from proxy.observability.logging_setup import pin_noisy_loggers
from proxy.secret import Secret
from proxy.server.app import create_app
from proxy.server.run import RunningServer, start_server
from tests.support.clock import FakeClock
from tests.support.moto_sts import MotoSts, running_moto_sts
from tests.support.redis_server import REDIS_PASSWORD, RedisServer, running_redis
from tests.support.sleeper import FakeSleeper

ServerFactory = Callable[..., Awaitable[TestServer]]
ORDERS_TEST_CASE_200 = "/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"


@pytest.fixture(scope="session")
def moto_sts() -> Iterator[MotoSts]:
    with running_moto_sts() as sts:
        yield sts


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator_config(clock: FakeClock) -> EmulatorConfig:
    return EmulatorConfig(clock=clock)


@pytest.fixture
async def emulator(aiohttp_server: ServerFactory, emulator_config: EmulatorConfig) -> TestServer:
    return await aiohttp_server(create_emulator_app(emulator_config))


def emulator_state(server: TestServer) -> EmulatorState:
    app = server.app
    assert app is not None
    return app[EMULATOR_STATE]


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def settings_for(
    emulator: TestServer,
    config: EmulatorConfig,
    *,
    aws: AwsSettings | None = None,
    **listen: object,
) -> Settings:
    """Proxy settings pointing at the emulator as LWA and SP-API (LWA-only unless `aws`)."""
    base = url_of(emulator)
    return Settings(
        listen=dataclasses.replace(ListenSettings(), **listen),  # type: ignore[arg-type]
        upstream=UpstreamSettings(endpoint=base, timeout_s=5.0),
        lwa=LwaSettings(
            client_id=config.client_id,
            client_secret=Secret(config.client_secret),
            refresh_token=Secret(config.refresh_token),
            token_url=f"{base}/auth/o2/token",
        ),
        aws=aws,
        # The proxy's own buckets are off unless a test is about them: tests send bursts that
        # the sandbox's 5/s would otherwise slow down (rate-limit tests turn them on).
        rate_limits=RateLimitSettings(enabled=False),
    )


def moto_aws_settings(moto_sts: MotoSts) -> AwsSettings:
    return AwsSettings(
        access_key_id=moto_sts.access_key_id,
        secret_access_key=Secret(moto_sts.secret_access_key),
        role_arn=moto_sts.role_arn,
        sts_endpoint=moto_sts.endpoint,
    )


def moto_key_lookup(moto_sts: MotoSts) -> Callable[[str], KeyMaterial | None]:
    """Lets the emulator verify signatures made with credentials moto issued."""

    def lookup(access_key_id: str) -> KeyMaterial | None:
        found = moto_sts.assumed_secret(access_key_id)
        return None if found is None else KeyMaterial(found[0], found[1])

    return lookup


StartProxy = Callable[[Settings], Awaitable[RunningServer]]


@pytest.fixture
def sleeper(clock: FakeClock) -> FakeSleeper:
    """The proxy's waits (rate limits, 429 backoff) move the fake clock instead of sleeping."""
    return FakeSleeper(clock)


@pytest.fixture
async def start_proxy(clock: FakeClock, sleeper: FakeSleeper) -> AsyncIterator[StartProxy]:
    """Starts the proxy on a free port through the same listener the CLI uses."""
    running: list[RunningServer] = []

    async def start(settings: Settings) -> RunningServer:
        app = create_app(settings, clock=clock, sleep=sleeper)
        server = await start_server(app, "127.0.0.1", 0, drain_timeout_s=1.0)
        running.append(server)
        return server

    yield start
    for server in running:
        await server.stop()


# Read by the proxy when upstream.egress_proxy is null: a developer's shell may set them, and
# the suite's loopback traffic must not go to a company proxy (egress tests set their own).
EGRESS_PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")


@pytest.fixture(autouse=True)
def no_egress_proxy_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*EGRESS_PROXY_VARIABLES, "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


# Token shapes (LWA access/refresh tokens, RDTs), SigV4 signatures, and the literal secrets the
# suite's servers use. Checked against every log record of every test, at DEBUG.
SECRET_SHAPES = re.compile(r"Atz[a-z.]*\|(?!\*)|Signature=[0-9a-f]{64}")
SUITE_SECRETS = (
    EmulatorConfig().client_secret,
    EmulatorConfig().refresh_token,
    EmulatorConfig().aws_secret_access_key,
)


@pytest.fixture(autouse=True)
def no_secret_in_any_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    pin_noisy_loggers()  # as the CLI's logging set-up does
    caplog.set_level(logging.DEBUG)
    yield
    # In teardown, caplog.records holds only teardown's records: ask for each phase.
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    for record in records:
        text = record.getMessage() + (record.exc_text or "")
        assert not SECRET_SHAPES.search(text), f"secret-shaped text logged: {record.name}"
        for secret in SUITE_SECRETS:
            assert secret not in text, f"a configured secret was logged by {record.name}"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server (with a password) for a test module; tests keep apart by key prefix."""
    with running_redis(REDIS_PASSWORD) as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A server for one test alone, which it may stop, pause, flush and restart."""
    with running_redis(REDIS_PASSWORD) as server:
        yield server
