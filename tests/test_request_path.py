"""One path for a request: what it is sent with is taken once, after its wait for quota.

Driven end to end against the emulator, on the shared fake clock, with the proxy's waits
moving that clock instead of sleeping.
"""

from __future__ import annotations

import dataclasses

import pytest

from proxy.config.settings import RateLimitSettings
from proxy.emulator import EmulatorConfig, create_emulator_app
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    moto_aws_settings,
    moto_key_lookup,
    settings_for,
)
from tests.support.clock import FakeClock
from tests.support.moto_sts import MotoSts
from tests.support.rawhttp import build_request, raw_request
from tests.support.sleeper import FakeSleeper

GET_ORDERS_BURST = 20  # getOrders' production plan: one request a minute, burst 20
RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"
ADDRESS = "/orders/v0/orders/TEST_CASE_200/address"  # restricted: needs an RDT
TOKEN_LIFETIME_S = 30.0  # shorter than the minute a request waits for getOrders' next token


async def test_a_request_that_waits_for_quota_past_its_tokens_life_is_sent_with_a_fresh_one(
    aiohttp_server: ServerFactory, clock: FakeClock, sleeper: FakeSleeper, start_proxy: StartProxy
) -> None:
    # The emulator announces getOrders' own rate (the proxy's bucket follows the header) and
    # never throttles by itself.
    config = EmulatorConfig(
        clock=clock, token_lifetime_s=TOKEN_LIFETIME_S, rate_per_s=1 / 60, burst=1000
    )
    emulator = await aiohttp_server(create_emulator_app(config))
    settings = settings_for(emulator, config)
    production = dataclasses.replace(settings.upstream, sandbox=False)
    limits = RateLimitSettings(enabled=True, max_wait_s=120.0)
    proxy = await start_proxy(
        dataclasses.replace(settings, upstream=production, rate_limits=limits)
    )
    request = build_request("GET", ORDERS_TEST_CASE_200)
    for _ in range(GET_ORDERS_BURST):  # the token is fetched now and the bucket emptied
        assert (await raw_request("127.0.0.1", proxy.port, request)).status == 200

    # Valid when the request arrives, expired by the time its bucket lets it go.
    waited = await raw_request("127.0.0.1", proxy.port, request)

    assert sleeper.delays == [pytest.approx(60.0, abs=1.0)]  # getOrders' next token
    assert waited.status == 200, waited.body
    # Sent once, with a token fetched after the wait: no 403 "expired" and no replay.
    received = emulator_state(emulator).received
    assert len(received) == GET_ORDERS_BURST + 1


async def test_the_proxys_own_rdt_fetch_is_signed_and_sent_with_the_sellers_token(
    aiohttp_server: ServerFactory, clock: FakeClock, moto_sts: MotoSts, start_proxy: StartProxy
) -> None:
    config = EmulatorConfig(
        clock=clock, extra_credentials=moto_key_lookup(moto_sts), rate_per_s=1000, burst=1000
    )
    emulator = await aiohttp_server(create_emulator_app(config))
    proxy = await start_proxy(settings_for(emulator, config, aws=moto_aws_settings(moto_sts)))

    answer = await raw_request("127.0.0.1", proxy.port, build_request("GET", ADDRESS))

    assert answer.status == 200, answer.body
    rdt_fetch, address = emulator_state(emulator).received
    assert (rdt_fetch.method, rdt_fetch.raw_target) == ("POST", RDT_PATH)
    assert rdt_fetch.signature_ok is True
    assert rdt_fetch.header("x-amz-access-token")[0].startswith("Atza|")
    assert address.signature_ok is True
    assert address.header("x-amz-access-token")[0].startswith("Atz.sprdt|")
