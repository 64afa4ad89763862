"""Faults survived: a rejected token replayed once, a hanging LWA, a client that goes away."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Middleware

from proxy.emulator import EmulatorConfig, create_emulator_app
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    settings_for,
    url_of,
)
from tests.support.clock import FakeClock
from tests.support.rawhttp import build_request, raw_request

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXPIRED = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "The access token you provided has expired.",
        }
    ]
}


async def emulator_with(
    aiohttp_server: ServerFactory, config: EmulatorConfig, fault: Middleware
) -> TestServer:
    """The emulator with a fault injected in front of it (Amazon misbehaving on cue)."""
    app = create_emulator_app(config)
    app.middlewares.append(fault)
    return await aiohttp_server(app)


def token_of(request: web.Request) -> str:
    return request.headers.get("x-amz-access-token", "")


async def test_token_rejected_once_is_refreshed_and_the_request_replayed_with_its_body(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    """Amazon says the token expired though the proxy thought it valid (docs/sp-api-facts.md §4)."""
    refused: list[tuple[str, bytes]] = []

    @web.middleware
    async def expire_first_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/tokens/") and not refused:
            refused.append((token_of(request), await request.read()))
            return web.json_response(EXPIRED, status=403)
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, expire_first_token)
    proxy = await start_proxy(settings_for(emulator, config))
    resource = {"method": "GET", "path": "/orders/v0/orders/TEST_CASE_200/address"}
    body = json.dumps({"restrictedResources": [resource]}).encode()

    request = build_request(
        "POST",
        "/tokens/2021-03-01/restrictedDataToken",
        [("Content-Type", "application/json")],
        body,
    )
    response = await raw_request("127.0.0.1", proxy.port, request)

    assert response.header("x-spapi-proxy-error") is None
    ((first_token, first_body),) = refused
    replayed = emulator_state(emulator).received[-1]
    assert replayed.body == first_body == body
    (replay_token,) = replayed.header("x-amz-access-token")
    assert replay_token != first_token
    assert emulator_state(emulator).lwa_calls["refresh_token"] == 2
    assert response.status == replayed.status == 200
    assert json.loads(response.body)["restrictedDataToken"]


async def test_other_403s_are_not_retried(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    calls = 0

    @web.middleware
    async def deny(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal calls
        if request.path.startswith("/orders/"):
            calls += 1
            denied = {
                "errors": [
                    {
                        "code": "Unauthorized",
                        "message": "Access to requested resource is denied.",
                        "details": "",
                    }
                ]
            }
            return web.json_response(denied, status=403, headers={"x-amzn-RequestId": "req-1"})
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, deny)
    proxy = await start_proxy(settings_for(emulator, config))

    response = await raw_request(
        "127.0.0.1", proxy.port, build_request("GET", ORDERS_TEST_CASE_200)
    )
    assert response.status == 403
    assert response.header("x-amzn-RequestId") == "req-1"
    assert (
        json.loads(response.body)["errors"][0]["message"]
        == "Access to requested resource is denied."
    )
    assert calls == 1


async def test_hanging_lwa_gives_503_in_bounded_time_and_recovery_needs_no_restart(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    hanging = True

    @web.middleware
    async def hang_lwa(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/auth/o2/token" and hanging:
            await asyncio.sleep(60)
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, hang_lwa)
    settings = settings_for(emulator, config)
    lwa = dataclasses.replace(settings.lwa, timeout_s=0.5)
    proxy = await start_proxy(dataclasses.replace(settings, lwa=lwa))

    started = time.monotonic()
    response = await raw_request(
        "127.0.0.1", proxy.port, build_request("GET", ORDERS_TEST_CASE_200)
    )
    elapsed = time.monotonic() - started
    assert response.status == 503
    assert response.header("x-spapi-proxy-error") == "LwaUnavailable"
    # three tries of 0.5 s plus backoff sleeps of at most 0.5 s and 1 s
    assert elapsed < 3 * 0.5 + 1.5 + 1.0

    hanging = False
    response = await raw_request(
        "127.0.0.1", proxy.port, build_request("GET", ORDERS_TEST_CASE_200)
    )
    assert response.status == 200


def established_connections_to(port: int) -> int:
    """Client-side TCP connections to `port` in ESTABLISHED state, read from the kernel."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":
                count += 1
    return count


@pytest.mark.parametrize("phase", ["waiting for headers", "mid-stream"])
async def test_client_gone_cancels_the_upstream_request(
    phase: str,
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    upstream_cancelled = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        # Long silences: the proxy only notices the client left if it is told (handler
        # cancellation), not because a write to the client fails.
        try:
            if phase == "waiting for headers":
                await asyncio.sleep(30)
            response = web.StreamResponse(headers={"x-amzn-RequestId": "slow"})
            await response.prepare(request)
            await response.write(b"x" * 1024)
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            upstream_cancelled.set()
            raise
        return response

    app = web.Application()
    app.router.add_get("/reports/2021-06-30/documents/slow", slow)
    slow_server = await aiohttp_server(app)
    settings = settings_for(emulator, emulator_config)
    upstream = dataclasses.replace(settings.upstream, endpoint=url_of(slow_server), timeout_s=60)
    proxy = await start_proxy(dataclasses.replace(settings, upstream=upstream))
    await raw_request("127.0.0.1", proxy.port, build_request("GET", "/_proxy/ready"))
    await asyncio.sleep(0.05)
    tasks_before = len(asyncio.all_tasks())
    slow_port = slow_server.port or 0

    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(build_request("GET", "/reports/2021-06-30/documents/slow"))
    await writer.drain()
    if phase == "mid-stream":
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    else:
        await asyncio.sleep(0.2)
    assert established_connections_to(slow_port) == 1
    writer.close()

    await asyncio.wait_for(upstream_cancelled.wait(), timeout=3)
    for _ in range(60):
        if established_connections_to(slow_port) == 0 and len(asyncio.all_tasks()) <= tasks_before:
            break
        await asyncio.sleep(0.05)
    assert established_connections_to(slow_port) == 0
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_upstream_breaking_off_mid_body_is_visible_to_the_client(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked
        await response.prepare(request)
        await response.write(b"partial report data")
        assert request.transport is not None
        request.transport.abort()  # dies without the terminating chunk
        return response

    app = web.Application()
    app.router.add_get("/reports/2021-06-30/documents/broken", broken)
    upstream_server = await aiohttp_server(app)
    settings = settings_for(emulator, emulator_config)
    upstream = dataclasses.replace(settings.upstream, endpoint=url_of(upstream_server))
    proxy = await start_proxy(dataclasses.replace(settings, upstream=upstream))

    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(build_request("GET", "/reports/2021-06-30/documents/broken"))
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()

    assert raw.startswith(b"HTTP/1.1 200")
    assert b"Transfer-Encoding: chunked" in raw
    assert b"partial report data" in raw
    assert not raw.endswith(b"0\r\n\r\n"), "a truncated body must not look complete"


async def test_a_large_403_body_reaches_the_client_whole(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    page = b"<html>" + b"denied " * 40_000 + b"</html>"  # ~280 KB, past what the proxy inspects

    @web.middleware
    async def big_denial(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/orders/"):
            return web.Response(status=403, body=page, content_type="text/html")
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, big_denial)
    proxy = await start_proxy(settings_for(emulator, config))

    response = await raw_request(
        "127.0.0.1", proxy.port, build_request("GET", ORDERS_TEST_CASE_200)
    )
    assert response.status == 403
    assert response.body == page


async def test_a_short_answer_cut_before_its_length_becomes_a_proxy_error(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    """A small answer is read whole before anything is sent, so a cut can still be reported."""

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 100)
        assert request.transport is not None
        request.transport.abort()
        return response

    app = web.Application()
    app.router.add_get("/orders/v0/orders", cut)
    upstream_server = await aiohttp_server(app)
    settings = settings_for(emulator, emulator_config)
    upstream = dataclasses.replace(settings.upstream, endpoint=url_of(upstream_server))
    proxy = await start_proxy(dataclasses.replace(settings, upstream=upstream))

    response = await raw_request("127.0.0.1", proxy.port, build_request("GET", "/orders/v0/orders"))
    assert response.status == 502
    assert response.header("x-spapi-proxy-error") == "UpstreamUnreachable"
    assert "broke off" in json.loads(response.body)["errors"][0]["message"]
