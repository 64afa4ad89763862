"""Every row of the README's error table, produced for real and checked for shape and wording."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config.settings import AwsSettings
from proxy.emulator import EmulatorConfig
from proxy.secret import Secret
from proxy.server.run import RunningServer
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    moto_aws_settings,
    settings_for,
    url_of,
)
from tests.support.moto_sts import MotoSts, free_port
from tests.support.rawhttp import RawResponse, build_request, raw_request


async def call(
    proxy: RunningServer,
    method: str = "GET",
    target: str = ORDERS_TEST_CASE_200,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> RawResponse:
    return await raw_request(
        "127.0.0.1", proxy.port or 0, build_request(method, target, headers, body)
    )


def proxy_error(response: RawResponse, status: int, code: str) -> dict[str, str]:
    """Asserts SP-API's error shape plus the proxy's marker header; returns the error entry."""
    assert response.status == status, response.body
    assert response.header("x-spapi-proxy-error") == code
    document = json.loads(response.body)
    (entry,) = document["errors"]
    assert entry["code"] == code
    assert entry["message"]
    return dict(entry)


async def test_lwa_rejected_names_lwa_error_code(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    settings = settings_for(emulator, emulator_config)
    wrong = dataclasses.replace(settings.lwa, client_secret=Secret("not-the-right-secret"))
    proxy = await start_proxy(dataclasses.replace(settings, lwa=wrong))

    entry = proxy_error(await call(proxy), 502, "LwaRejected")
    assert "invalid_client" in entry["message"]
    assert "lwa.client_secret" in entry["details"]
    assert emulator_state(emulator).received == type(emulator_state(emulator).received)()


async def test_lwa_unavailable_after_bounded_retries(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    attempts = 0

    async def broken_lwa(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        return web.Response(status=503, text="temporarily_unavailable")

    app = web.Application()
    app.router.add_post("/auth/o2/token", broken_lwa)
    lwa = await aiohttp_server(app)
    settings = settings_for(emulator, emulator_config)
    proxy = await start_proxy(
        dataclasses.replace(
            settings,
            lwa=dataclasses.replace(settings.lwa, token_url=f"{url_of(lwa)}/auth/o2/token"),
        )
    )

    entry = proxy_error(await call(proxy), 503, "LwaUnavailable")
    assert "HTTP 503" in entry["message"]
    assert attempts == 3


async def test_lwa_unreachable_is_unavailable(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    settings = settings_for(emulator, emulator_config)
    closed = f"http://127.0.0.1:{free_port()}/auth/o2/token"
    proxy = await start_proxy(
        dataclasses.replace(settings, lwa=dataclasses.replace(settings.lwa, token_url=closed))
    )
    entry = proxy_error(await call(proxy), 503, "LwaUnavailable")
    assert "lwa.token_url" in entry["details"]


async def test_sts_rejected_when_moto_refuses_the_signature(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    moto_sts: MotoSts,
    start_proxy: StartProxy,
) -> None:
    aws = dataclasses.replace(moto_aws_settings(moto_sts), secret_access_key=Secret("wrong-secret"))
    proxy = await start_proxy(settings_for(emulator, emulator_config, aws=aws))

    entry = proxy_error(await call(proxy), 502, "StsRejected")
    assert "SignatureDoesNotMatch" in entry["message"]
    assert "wrong-secret" not in json.dumps(entry)


async def test_sts_unreachable_is_unavailable(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    aws = AwsSettings(
        access_key_id="AKIAEXAMPLEEXAMPLE12",
        secret_access_key=Secret("example-secret"),
        role_arn="arn:aws:iam::123456789012:role/SellingPartnerApiRole",
        sts_endpoint=f"http://127.0.0.1:{free_port()}",
        timeout_s=1.0,
    )
    proxy = await start_proxy(settings_for(emulator, emulator_config, aws=aws))
    entry = proxy_error(await call(proxy), 503, "StsUnavailable")
    assert "SellingPartnerApiRole" in entry["message"]


async def test_upstream_unreachable(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    settings = settings_for(emulator, emulator_config)
    closed = f"http://127.0.0.1:{free_port()}"
    upstream = dataclasses.replace(settings.upstream, endpoint=closed)
    proxy = await start_proxy(dataclasses.replace(settings, upstream=upstream))

    entry = proxy_error(await call(proxy), 502, "UpstreamUnreachable")
    assert closed in entry["message"]


async def test_upstream_timeout(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    slow_upstream = await aiohttp_server(app)
    settings = settings_for(emulator, emulator_config)
    upstream = dataclasses.replace(settings.upstream, endpoint=url_of(slow_upstream), timeout_s=0.3)
    proxy = await start_proxy(dataclasses.replace(settings, upstream=upstream))

    entry = proxy_error(await call(proxy), 504, "UpstreamTimeout")
    assert "upstream.timeout_s" in entry["message"]


async def test_request_too_large_by_content_length_and_by_chunks(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config, max_body_bytes=1000))

    entry = proxy_error(
        await call(proxy, "POST", "/feeds/2021-06-30/documents", body=b"x" * 1001),
        413,
        "RequestTooLarge",
    )
    assert "listen.max_body_bytes" in entry["message"]

    chunked = (
        b"POST /feeds/2021-06-30/documents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"200\r\n"
        + b"y" * 512
        + b"\r\n"
        + b"200\r\n"
        + b"y" * 512
        + b"\r\n0\r\n\r\n"
    )
    response = await raw_request("127.0.0.1", proxy.port or 0, chunked)
    proxy_error(response, 413, "RequestTooLarge")
    assert len(emulator_state(emulator).received) == 0


async def test_proxy_unauthorized_without_the_right_key(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    key = "local-client-key-0123456789"
    proxy = await start_proxy(settings_for(emulator, emulator_config, auth_token=Secret(key)))

    for sent in ([], [("x-spapi-proxy-key", "")], [("x-spapi-proxy-key", key + "x")]):
        entry = proxy_error(await call(proxy, headers=sent), 401, "ProxyUnauthorized")
        assert "x-spapi-proxy-key" in entry["message"]
    assert len(emulator_state(emulator).received) == 0
    assert emulator_state(emulator).lwa_calls["refresh_token"] == 0

    response = await call(proxy, headers=[("x-spapi-proxy-key", key)])
    assert response.status == 200
    received = emulator_state(emulator).received[-1]
    assert all(name.lower() != "x-spapi-proxy-key" for name, _ in received.headers)
