"""Restricted data tokens, grantless tokens, rate limits and profiles, through the emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from proxy.config.settings import AwsSettings, Profile, RateLimitSettings, RdtSettings
from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.secret import Secret
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    settings_for,
    url_of,
)
from tests.support.clock import FakeClock
from tests.support.rawhttp import RawResponse, build_request, raw_request
from tests.support.sleeper import FakeSleeper

ADDRESS = "/orders/v0/orders/TEST_CASE_200/address"
DESTINATIONS = "/notifications/v1/destinations"


async def call(port: int, target: str, headers: list[tuple[str, str]] | None = None) -> RawResponse:
    return await raw_request("127.0.0.1", port, build_request("GET", target, headers))


def tokens_sent(emulator: TestServer, path: str) -> list[str]:
    return [
        value
        for received in emulator_state(emulator).received
        if received.raw_target.startswith(path)
        for value in received.header("x-amz-access-token")
    ]


async def test_restricted_operation_gets_an_rdt_with_no_client_effort(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))

    first, second = await call(proxy.port, ADDRESS), await call(proxy.port, ADDRESS)

    assert (first.status, second.status) == (200, 200), first.body
    assert json.loads(first.body)["payload"]
    sent = tokens_sent(emulator, ADDRESS)
    assert len(sent) == 2
    assert all(token.startswith("Atz.sprdt|") for token in sent)  # an RDT, not the LWA token
    assert len(tokens_sent(emulator, "/tokens/2021-03-01/restrictedDataToken")) == 1


async def test_data_elements_header_asks_for_an_rdt_on_get_order(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    plain = await call(proxy.port, "/orders/v0/orders/TEST_CASE_200")
    personal = await call(
        proxy.port,
        "/orders/v0/orders/TEST_CASE_200",
        [("x-spapi-data-elements", "buyerInfo, shippingAddress")],
    )
    assert (plain.status, personal.status) == (200, 200)
    (without, with_elements) = tokens_sent(emulator, "/orders/v0/orders/TEST_CASE_200")
    assert without.startswith("Atza|")
    assert with_elements.startswith("Atz.sprdt|")
    rdt_request = next(
        r for r in emulator_state(emulator).received if r.raw_target.startswith("/tokens/")
    )
    (resource,) = json.loads(rdt_request.body)["restrictedResources"]
    assert resource == {
        "method": "GET",
        "path": "/orders/v0/orders/TEST_CASE_200",
        "dataElements": ["buyerInfo", "shippingAddress"],
    }


async def test_a_client_rdt_is_forwarded_as_is(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    response = await call(proxy.port, ADDRESS, [("x-spapi-rdt", "Atz.sprdt|client-brought-this")])
    assert response.status == 403  # the emulator doesn't know it: proves it was sent unchanged
    assert tokens_sent(emulator, ADDRESS) == ["Atz.sprdt|client-brought-this"]
    assert tokens_sent(emulator, "/tokens/") == []
    received = emulator_state(emulator).received[-1]
    assert received.header("x-spapi-rdt") == []


async def test_grantless_operation_gets_a_grantless_token_and_seller_calls_never_do(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))

    destinations = await call(proxy.port, DESTINATIONS)
    orders = await call(proxy.port, ORDERS_TEST_CASE_200)
    again = await call(proxy.port, DESTINATIONS)

    assert (destinations.status, orders.status, again.status) == (200, 200, 200)
    (grantless, grantless_again) = tokens_sent(emulator, DESTINATIONS)
    (seller,) = tokens_sent(emulator, "/orders/v0/orders?")
    assert grantless == grantless_again != seller
    calls = emulator_state(emulator).lwa_calls
    assert (calls["client_credentials"], calls["refresh_token"]) == (1, 1)


async def test_burst_is_respected_and_the_rest_get_the_proxys_own_429(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    config = EmulatorConfig(clock=clock, rate_per_s=1000, burst=1000)
    emulator = await aiohttp_server(create_emulator_app(config))
    settings = settings_for(emulator, config)
    production_plan = dataclasses.replace(settings.upstream, sandbox=False)  # getOrders: 20, 1/min
    limits = RateLimitSettings(enabled=True, max_wait_s=1.0)
    proxy = await start_proxy(
        dataclasses.replace(settings, upstream=production_plan, rate_limits=limits)
    )

    answers = await asyncio.gather(*(call(proxy.port, ORDERS_TEST_CASE_200) for _ in range(40)))

    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200] * 20 + [429] * 20
    local = [answer for answer in answers if answer.status == 429]
    assert all(answer.header("x-spapi-proxy-error") == "QuotaExceeded" for answer in local)
    assert all(int(answer.header("Retry-After") or 0) >= 1 for answer in local)
    assert json.loads(local[0].body)["errors"][0]["code"] == "QuotaExceeded"
    upstream_statuses = [r.status for r in emulator_state(emulator).received]
    assert upstream_statuses == [200] * 20  # Amazon's quota never overspent, no 429 upstream


async def test_upstream_429_is_retried_with_backoff_until_it_succeeds(
    aiohttp_server: ServerFactory, clock: FakeClock, sleeper: FakeSleeper, start_proxy: StartProxy
) -> None:
    seen: list[float] = []

    @web.middleware
    async def throttle_twice(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/orders/"):
            seen.append(clock.now)
            if len(seen) <= 2:
                quota = {
                    "errors": [
                        {
                            "code": "QuotaExceeded",
                            "message": "You exceeded your quota for the requested resource.",
                        }
                    ]
                }
                return web.json_response(quota, status=429)
        return await handler(request)

    config = EmulatorConfig(clock=clock, rate_per_s=1000, burst=1000)
    app = create_emulator_app(config)
    app.middlewares.append(throttle_twice)
    emulator = await aiohttp_server(app)
    settings = settings_for(emulator, config)
    proxy = await start_proxy(dataclasses.replace(settings, rate_limits=RateLimitSettings()))

    started = time.monotonic()
    response = await call(proxy.port, ORDERS_TEST_CASE_200)

    assert response.status == 200
    assert len(seen) == 3
    first_delay, second_delay = sleeper.delays
    assert 1.0 <= first_delay <= 1.25  # 1 s plus up to 25 % jitter
    assert 2.0 <= second_delay <= 2.5  # 2 s plus up to 25 % jitter
    # The requests went upstream that far apart on the proxy's clock, yet nobody waited.
    assert [seen[1] - seen[0], seen[2] - seen[1]] == pytest.approx(sleeper.delays)
    assert time.monotonic() - started < 3.0  # the delays alone add up to at least 3 s


async def test_two_profiles_reach_their_own_hosts_with_their_own_tokens(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    na_config = EmulatorConfig(clock=clock)
    eu_config = EmulatorConfig(clock=clock, refresh_token="Atzr|eu-seller-refresh-token")
    na = await aiohttp_server(create_emulator_app(na_config))
    eu = await aiohttp_server(create_emulator_app(eu_config))
    settings = settings_for(na, na_config)
    signing = AwsSettings(
        access_key_id=na_config.aws_access_key_id,
        secret_access_key=Secret(na_config.aws_secret_access_key),
    )
    eu_profile = Profile(
        "eu",
        dataclasses.replace(settings.upstream, region="eu", endpoint=url_of(eu)),
        dataclasses.replace(
            settings.lwa,
            refresh_token=Secret(eu_config.refresh_token),
            token_url=f"{url_of(eu)}/auth/o2/token",
        ),
        signing,
    )
    proxy = await start_proxy(dataclasses.replace(settings, aws=signing, profiles=(eu_profile,)))

    default = await call(proxy.port, ORDERS_TEST_CASE_200)
    europe = await call(proxy.port, ORDERS_TEST_CASE_200, [("x-spapi-profile", "eu")])
    unknown = await call(proxy.port, ORDERS_TEST_CASE_200, [("x-spapi-profile", "fe")])

    assert (default.status, europe.status) == (200, 200)
    assert unknown.status == 400
    assert "default, eu" in json.loads(unknown.body)["errors"][0]["details"]
    (na_request,) = emulator_state(na).received
    (eu_request,) = emulator_state(eu).received
    assert na_request.header("x-amz-access-token") != eu_request.header("x-amz-access-token")
    assert na_request.signature_ok is True
    assert eu_request.signature_ok is True
    assert "/us-east-1/execute-api/" in na_request.header("authorization")[0]
    assert "/eu-west-1/execute-api/" in eu_request.header("authorization")[0]
    assert eu_request.header("x-spapi-profile") == []
    assert emulator_state(eu).lwa_calls["refresh_token"] == 1


async def test_amazons_refusals_come_back_with_a_hint(
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @web.middleware
    async def edge_page(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/catalog/"):
            page = "<html><body><h1>400 Bad Request</h1></body></html>"
            return web.Response(status=400, text=page, content_type="text/html")
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    app = create_emulator_app(config)
    app.middlewares.append(edge_page)
    emulator = await aiohttp_server(app)
    settings = settings_for(emulator, config)
    no_rdt = dataclasses.replace(settings, rdt=RdtSettings(enabled=False))
    proxy = await start_proxy(no_rdt)

    address = await call(proxy.port, ADDRESS)
    edge = await call(proxy.port, "/catalog/2022-04-01/items/B000000001")
    fine = await call(proxy.port, ORDERS_TEST_CASE_200)

    assert address.status == 403
    assert "restricted data token" in (address.header("x-spapi-proxy-hint") or "")
    assert edge.status == 400
    assert "before SP-API" in (edge.header("x-spapi-proxy-hint") or "")
    assert fine.header("x-spapi-proxy-hint") is None
    assert address.header("x-spapi-proxy-error") is None  # still Amazon's own answer
    assert "SP-API answered 403: This operation returns personal data" in caplog.text
