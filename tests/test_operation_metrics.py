"""The metrics an operator reads, scraped from /_proxy/metrics after known traffic: requests and
upstream latency by operation, method, status and profile; local waits and 429s, Amazon's 429s,
retries, RDT fetches and cache hits; open connections; process_* metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from prometheus_client.parser import text_string_to_metric_families

from proxy.config.settings import RateLimitSettings
from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.server.run import RunningServer
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    settings_for,
)
from tests.support.clock import FakeClock
from tests.support.moto_sts import free_port
from tests.support.rawhttp import RawResponse, build_request, raw_request
from tests.test_cli_e2e import SCRIPT, lwa_environment, wait_healthy, write_config

ADDRESS = "/orders/v0/orders/TEST_CASE_200/address"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def call(proxy: RunningServer, target: str) -> RawResponse:
    return await raw_request("127.0.0.1", proxy.port or 0, build_request("GET", target))


async def scrape(proxy: RunningServer) -> tuple[str, Samples]:
    text = (await call(proxy, "/_proxy/metrics")).body.decode()
    return text, samples_of(text)


def samples_of(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == name and wanted <= series)


async def test_requests_and_latency_by_operation_and_profile_and_own_endpoints_not_counted(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    for _ in range(3):
        assert (await call(proxy, ORDERS_TEST_CASE_200)).status == 200
    await call(proxy, "/no/such/operation")
    for own in ("/_proxy/health", "/_proxy/ready", "/_proxy/metrics"):
        await call(proxy, own)

    text, samples = await scrape(proxy)

    orders = {"operation": "getOrders", "method": "GET", "status": "200", "profile": "default"}
    assert value(samples, "spapi_proxy_requests_total", **orders) == 3
    assert total(samples, "spapi_proxy_requests_total", operation="unknown") == 1
    assert total(samples, "spapi_proxy_requests_total") == 4  # the own endpoints are not in it
    latency = "spapi_proxy_upstream_latency_seconds_count"
    assert value(samples, latency, **orders) == 3
    assert total(samples, latency) == 4  # the unknown path went upstream too
    assert "_created" not in text
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 0


async def test_local_waits_and_local_429s_are_counted_by_operation(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    config = EmulatorConfig(clock=clock, rate_per_s=1000, burst=1000)
    emulator = await aiohttp_server(create_emulator_app(config))
    settings = settings_for(emulator, config)
    # Sandbox plan: 5/s, burst 15. Twenty requests with 10 s to wait: 15 at once, 5 wait.
    waiting = dataclasses.replace(settings, rate_limits=RateLimitSettings(max_wait_s=10.0))
    proxy = await start_proxy(waiting)
    await asyncio.gather(*(call(proxy, ORDERS_TEST_CASE_200) for _ in range(20)))
    _, samples = await scrape(proxy)
    labels = {"operation": "getOrders", "profile": "default"}
    assert value(samples, "spapi_proxy_quota_waits_total", **labels) == 5
    assert total(samples, "spapi_proxy_quota_rejections_total") == 0

    # Production plan for getOrders: burst 20 then 1 a minute; one second to wait: 20 and 20.
    production = dataclasses.replace(settings.upstream, sandbox=False)
    refusing = dataclasses.replace(
        settings, upstream=production, rate_limits=RateLimitSettings(max_wait_s=1.0)
    )
    proxy = await start_proxy(refusing)
    await asyncio.gather(*(call(proxy, ORDERS_TEST_CASE_200) for _ in range(40)))
    _, samples = await scrape(proxy)
    rejections = "spapi_proxy_quota_rejections_total"
    assert value(samples, rejections, source="local", **labels) == 20
    assert value(samples, rejections, source="amazon", **labels) == 0


async def test_amazons_429s_and_the_retries_they_cause_are_counted(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    throttled: list[int] = []

    @web.middleware
    async def throttle_twice(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/orders/") and len(throttled) < 2:
            throttled.append(1)
            return web.json_response({"errors": [{"code": "QuotaExceeded"}]}, status=429)
        return await handler(request)

    config = EmulatorConfig(clock=clock, rate_per_s=1000, burst=1000)
    app = create_emulator_app(config)
    app.middlewares.append(throttle_twice)
    emulator = await aiohttp_server(app)
    settings = settings_for(emulator, config)
    proxy = await start_proxy(dataclasses.replace(settings, rate_limits=RateLimitSettings()))

    assert (await call(proxy, ORDERS_TEST_CASE_200)).status == 200
    _, samples = await scrape(proxy)

    labels = {"operation": "getOrders", "profile": "default"}
    assert value(samples, "spapi_proxy_quota_rejections_total", source="amazon", **labels) == 2
    assert value(samples, "spapi_proxy_retries_total", reason="throttled") == 2
    assert value(samples, "spapi_proxy_retries_total", reason="token_rejected") == 0
    assert value(samples, "spapi_proxy_retries_total", reason="stale_connection") == 0
    # One request, answered 200 in the end: counted once.
    assert total(samples, "spapi_proxy_requests_total") == 1


async def test_a_token_sp_api_rejected_is_counted_as_a_retry(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    expired = {
        "errors": [
            {
                "code": "Unauthorized",
                "message": "Access to requested resource is denied.",
                "details": "The access token you provided has expired.",
            }
        ]
    }
    refused: list[int] = []

    @web.middleware
    async def expire_first_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/orders/") and not refused:
            refused.append(1)
            return web.json_response(expired, status=403)
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    app = create_emulator_app(config)
    app.middlewares.append(expire_first_token)
    emulator = await aiohttp_server(app)
    proxy = await start_proxy(settings_for(emulator, config))

    assert (await call(proxy, ORDERS_TEST_CASE_200)).status == 200
    _, samples = await scrape(proxy)

    assert value(samples, "spapi_proxy_retries_total", reason="token_rejected") == 1
    assert value(samples, "spapi_proxy_credential_refreshes_total", source="lwa") == 2


async def test_rdt_fetches_and_cache_hits_are_counted(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    for _ in range(3):
        assert (await call(proxy, ADDRESS)).status == 200

    _, samples = await scrape(proxy)

    assert value(samples, "spapi_proxy_rdt_fetches_total") == 1
    assert value(samples, "spapi_proxy_rdt_cache_hits_total") == 2


async def test_open_inbound_and_upstream_connections_are_gauged(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    assert (await call(proxy, ORDERS_TEST_CASE_200)).status == 200  # leaves one pooled upstream
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"GET /_proxy/health HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")  # the connection is open and kept alive
        _, samples = await scrape(proxy)
    finally:
        writer.close()

    assert value(samples, "spapi_proxy_inbound_connections") == 2  # that one and the scrape's
    assert value(samples, "spapi_proxy_upstream_connections") == 1


async def test_with_two_workers_every_scrape_reports_the_exact_totals_of_both(
    emulator: TestServer, tmp_path: Path
) -> None:
    config = EmulatorConfig()
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        SCRIPT,
        "run",
        "--config",
        str(write_config(tmp_path, emulator, port)),
        env={**lwa_environment(config), "SPAPI_PROXY_LISTEN_WORKERS": "2"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_healthy(port, process)
        # Each request on a connection of its own, so the kernel spreads them over the workers.
        # At least twelve, and more (within the sandbox's burst of 15, so none waits or is
        # refused) while only one worker has served: the second may bind a moment after the
        # first answered the health check.
        sent = 0
        while sent < 12 or (sent < 15 and emulator_state(emulator).lwa_calls["refresh_token"] < 2):
            request = build_request("GET", ORDERS_TEST_CASE_200)
            assert (await raw_request("127.0.0.1", port, request)).status == 200
            sent += 1
        scrapes = []
        for _ in range(6):
            answer = await raw_request("127.0.0.1", port, build_request("GET", "/_proxy/metrics"))
            scrapes.append(samples_of(answer.body.decode()))
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, output.decode()

    assert len(emulator_state(emulator).received) == sent
    for samples in scrapes:
        assert total(samples, "spapi_proxy_requests_total", operation="getOrders") == sent
        assert total(samples, "spapi_proxy_upstream_latency_seconds_count") == sent
        # Each worker fetches its LWA token on its first request: 2 says both served.
        assert value(samples, "spapi_proxy_credential_refreshes_total", source="lwa") == 2
        assert value(samples, "process_cpu_seconds_total") > 0
