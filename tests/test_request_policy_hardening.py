"""Request policy under hostile input: rate-limit headers, an SDK's own RDT, compressed 403s.

Each test drives the proxy against the emulator (or the emulator with one answer changed),
so what is checked is what a client and Amazon would see.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import zlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from proxy.config.settings import RateLimitSettings, RdtSettings, Settings
from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.emulator.auth import DENIED, EXPIRED
from proxy.forwarding import diagnosis
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    settings_for,
)
from tests.support.clock import FakeClock
from tests.support.rawhttp import RawResponse, build_request, raw_request

ADDRESS = "/orders/v0/orders/TEST_CASE_200/address"
RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"
GET_ORDERS_BURST = 20  # getOrders' production plan: 0.0167/s, burst 20
RATE_LIMIT = "x-amzn-RateLimit-Limit"


async def call(
    port: int, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> RawResponse:
    method = "POST" if body else "GET"
    return await raw_request("127.0.0.1", port, build_request(method, target, headers, body))


def sp_error(message: str, details: str, code: str = "Unauthorized") -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "details": details}]}).encode()


# --- x-amzn-RateLimit-Limit out of any sane range ---------------------------------------------


async def proxy_with_rate_limit_header(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy, value: str
) -> tuple[TestServer, int]:
    """The emulator with every Orders answer carrying `x-amzn-RateLimit-Limit: value`, behind a
    proxy that mirrors getOrders' production plan and waits at most 1 s for a token."""

    @web.middleware
    async def rate_limit_header(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.startswith("/orders/"):
            response.headers[RATE_LIMIT] = value
        return response

    config = EmulatorConfig(clock=clock, rate_per_s=1000, burst=1000)
    app = create_emulator_app(config)
    app.middlewares.append(rate_limit_header)
    emulator = await aiohttp_server(app)
    settings = settings_for(emulator, config)
    production = dataclasses.replace(settings.upstream, sandbox=False)
    limits = RateLimitSettings(enabled=True, max_wait_s=1.0)
    proxy = await start_proxy(
        dataclasses.replace(settings, upstream=production, rate_limits=limits)
    )
    return emulator, proxy.port


async def spend_the_burst(port: int) -> None:
    for _ in range(GET_ORDERS_BURST):
        answer = await call(port, ORDERS_TEST_CASE_200)
        assert answer.status == 200, answer.body


@pytest.mark.parametrize("value", ["5e-324", "1e-9", "0", "-1", "nan", "inf"])
async def test_a_rate_limit_header_near_zero_cannot_block_the_operation(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy, value: str
) -> None:
    emulator, port = await proxy_with_rate_limit_header(aiohttp_server, clock, start_proxy, value)
    await spend_the_burst(port)

    clock.advance(61.0)  # one token back at getOrders' 1/min
    after_a_minute = await call(port, ORDERS_TEST_CASE_200)

    # Neither a 500 (math.ceil(inf)) nor a local 429 with a Retry-After of years.
    assert after_a_minute.status == 200, after_a_minute.body
    assert len(emulator_state(emulator).received) == GET_ORDERS_BURST + 1


async def test_an_absurdly_high_rate_limit_header_does_not_lift_the_limit(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    emulator, port = await proxy_with_rate_limit_header(aiohttp_server, clock, start_proxy, "1e12")
    await spend_the_burst(port)

    over = await call(port, ORDERS_TEST_CASE_200)

    assert over.status == 429
    assert over.header("x-spapi-proxy-error") == "QuotaExceeded"
    assert len(emulator_state(emulator).received) == GET_ORDERS_BURST


async def test_a_local_429s_retry_after_is_at_most_a_minute(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    # 0.001/s is a plausible rate (a token every 1000 s), so the bucket follows it.
    _, port = await proxy_with_rate_limit_header(aiohttp_server, clock, start_proxy, "0.001")
    await spend_the_burst(port)

    over = await call(port, ORDERS_TEST_CASE_200)

    assert over.status == 429
    assert 1 <= int(over.header("Retry-After") or "0") <= 60
    details = json.loads(over.body)["errors"][0]["details"]
    assert "Retry after 60.0 s" in details


async def test_a_bad_rate_limit_header_is_warned_about_once_per_operation(
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, port = await proxy_with_rate_limit_header(aiohttp_server, clock, start_proxy, "1e-9")
    await spend_the_burst(port)

    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and RATE_LIMIT in record.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "getOrders" in warnings[0]
    assert "1e-9" in warnings[0]


# --- an SDK's own restricted data token in x-amz-access-token -------------------------------


async def test_an_sdks_rdt_in_x_amz_access_token_is_forwarded_and_no_rdt_is_fetched(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    # As python-amazon-sp-api does: fetch the RDT through the proxy, then send it in the header
    # SP-API reads, in place of the LWA token.
    resources = {"restrictedResources": [{"method": "GET", "path": ADDRESS}]}
    fetched = await call(
        proxy.port,
        RDT_PATH,
        [("Content-Type", "application/json"), ("x-amz-access-token", "Atza|sdk-placeholder")],
        json.dumps(resources).encode(),
    )
    assert fetched.status == 200, fetched.body
    rdt = json.loads(fetched.body)["restrictedDataToken"]

    address = await call(proxy.port, ADDRESS, [("x-amz-access-token", rdt)])

    assert address.status == 200, address.body
    (sent,) = [
        value
        for received in emulator_state(emulator).received
        if received.raw_target.startswith(ADDRESS)
        for value in received.header("x-amz-access-token")
    ]
    assert sent == rdt  # the client's RDT, exactly once
    rdt_calls = [r for r in emulator_state(emulator).received if r.raw_target == RDT_PATH]
    assert len(rdt_calls) == 1  # the client's own; the proxy fetched none


async def test_an_sdks_rdt_is_forwarded_even_with_rdt_fetching_off(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    settings = dataclasses.replace(
        settings_for(emulator, emulator_config), rdt=RdtSettings(enabled=False)
    )
    proxy = await start_proxy(settings)

    unknown = await call(proxy.port, ADDRESS, [("x-amz-access-token", "Atz.sprdt|not-issued")])

    assert unknown.status == 403  # the emulator never issued it: proves it was sent as is
    assert "x-amz-access-token" in (unknown.header("x-spapi-proxy-hint") or "")
    sent = emulator_state(emulator).received[-1].header("x-amz-access-token")
    assert sent == ["Atz.sprdt|not-issued"]


async def test_any_other_incoming_access_token_is_still_replaced(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))

    answer = await call(
        proxy.port, ORDERS_TEST_CASE_200, [("x-amz-access-token", "Atza|the-clients-own")]
    )

    assert answer.status == 200
    (sent,) = emulator_state(emulator).received[-1].header("x-amz-access-token")
    assert sent.startswith("Atza|")
    assert sent != "Atza|the-clients-own"


# --- compressed 403s ------------------------------------------------------------------------


def compressed(body: bytes, encoding: str) -> bytes:
    return gzip.compress(body) if encoding == "gzip" else zlib.compress(body)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_expired_token_403_is_refreshed_and_replayed(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy, encoding: str
) -> None:
    seen: list[str] = []

    @web.middleware
    async def first_token_expired(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/orders/"):
            return await handler(request)
        seen.append(request.headers.get("x-amz-access-token", ""))
        if len(seen) > 1 or encoding not in request.headers.get("Accept-Encoding", ""):
            return await handler(request)
        body = compressed(sp_error(DENIED, EXPIRED), encoding)
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        return web.Response(status=403, body=body, headers=headers)

    config = EmulatorConfig(clock=clock)
    app = create_emulator_app(config)
    app.middlewares.append(first_token_expired)
    emulator = await aiohttp_server(app)
    proxy = await start_proxy(settings_for(emulator, config))

    answer = await call(proxy.port, ORDERS_TEST_CASE_200, [("Accept-Encoding", "gzip, deflate")])

    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["payload"]  # the replay's answer
    assert len(seen) == 2
    assert seen[0] != seen[1]  # replayed with a new token
    assert emulator_state(emulator).lwa_calls["refresh_token"] == 2


async def upstream_answering(
    aiohttp_server: ServerFactory, status: int, body: bytes, headers: dict[str, str]
) -> tuple[Settings, TestServer]:
    """An SP-API that answers every request with these exact bytes; LWA from the emulator."""
    config = EmulatorConfig()
    emulator = await aiohttp_server(create_emulator_app(config))

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    upstream = await aiohttp_server(app)
    settings = settings_for(emulator, config)
    endpoint = str(upstream.make_url("")).rstrip("/")
    upstream_settings = dataclasses.replace(settings.upstream, endpoint=endpoint)
    return dataclasses.replace(settings, upstream=upstream_settings), emulator


async def test_a_compressed_403_not_about_the_token_reaches_the_client_byte_for_byte_with_a_hint(
    aiohttp_server: ServerFactory, start_proxy: StartProxy
) -> None:
    sent = gzip.compress(sp_error(DENIED, ""))  # "denied" for a restricted operation: needs an RDT
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    settings, _ = await upstream_answering(aiohttp_server, 403, sent, headers)
    proxy = await start_proxy(dataclasses.replace(settings, rdt=RdtSettings(enabled=False)))

    answer = await call(proxy.port, ADDRESS, [("Accept-Encoding", "gzip")])

    assert answer.status == 403
    assert answer.body == sent
    assert answer.header("Content-Encoding") == "gzip"
    assert answer.header("x-spapi-proxy-hint") == diagnosis.NEEDS_RDT
    assert answer.header("x-spapi-proxy-error") is None


async def test_a_compressed_403_bomb_is_inspected_within_bounds_and_passed_on_intact(
    aiohttp_server: ServerFactory, start_proxy: StartProxy
) -> None:
    # 32 MiB of spaces after the JSON inflate from ~32 KiB: only the head is ever inflated.
    inflated = sp_error(DENIED, EXPIRED) + b" " * (32 * 1024 * 1024)
    sent = gzip.compress(inflated, compresslevel=9)
    assert len(sent) < diagnosis.BODY_HEAD_BYTES
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    settings, lwa = await upstream_answering(aiohttp_server, 403, sent, headers)
    proxy = await start_proxy(settings)

    answer = await call(proxy.port, ORDERS_TEST_CASE_200, [("Accept-Encoding", "gzip")])

    assert answer.status == 403
    assert answer.body == sent  # bytes as Amazon sent them, not a decoded copy
    assert emulator_state(lwa).lwa_calls["refresh_token"] == 2  # read as "expired": replayed


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(b"x" * 10_000_000)),
        ("x-gzip", gzip.compress(b"x" * 10_000_000)),
        ("deflate", zlib.compress(b"x" * 10_000_000)),
        ("deflate", zlib.compress(b"x" * 10_000_000)[2:-4]),  # raw deflate, as some servers send
    ],
)
def test_a_compressed_body_head_decodes_to_at_most_body_head_bytes(
    encoding: str, body: bytes
) -> None:
    decoded = diagnosis.decoded_head(body, encoding)
    assert decoded == b"x" * diagnosis.BODY_HEAD_BYTES


@pytest.mark.parametrize("encoding", ["", "identity", "br", "gzip", "deflate"])
def test_an_undecodable_body_head_is_inspected_as_sent(encoding: str) -> None:
    body = b'{"errors": []}' if encoding in ("", "identity", "br") else b"\x1f\x8b\x08garbage"
    assert diagnosis.decoded_head(body, encoding) == body
