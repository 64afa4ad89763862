"""The proxy end to end against the emulator: plain requests in, signed SP-API requests out."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
from aiohttp.test_utils import TestServer
from moto.sts.models import sts_backends
from yarl import URL

from proxy.emulator import EmulatorConfig, ReceivedRequest, create_emulator_app
from proxy.server.run import RunningServer
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
from tests.support.moto_sts import ACCOUNT_ID, MotoSts
from tests.support.rawhttp import build_request, raw_request, read_response


async def get(
    proxy: RunningServer, target: str, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            URL(f"http://127.0.0.1:{proxy.port}{target}", encoded=True), headers=headers
        ) as r,
    ):
        return r.status, dict(r.headers), await r.read()


def last_received(emulator: TestServer) -> ReceivedRequest:
    return emulator_state(emulator).received[-1]


def header(received: ReceivedRequest, name: str) -> list[str]:
    return [value for key, value in received.headers if key.lower() == name.lower()]


async def signed_pair(
    aiohttp_server: ServerFactory, clock: FakeClock, moto_sts: MotoSts, start_proxy: StartProxy
) -> tuple[TestServer, RunningServer]:
    """An emulator that verifies moto-issued keys, and a signing proxy in front of it."""
    config = EmulatorConfig(
        clock=clock, extra_credentials=moto_key_lookup(moto_sts), rate_per_s=1000, burst=1000
    )
    emulator = await aiohttp_server(create_emulator_app(config))
    proxy = await start_proxy(settings_for(emulator, config, aws=moto_aws_settings(moto_sts)))
    return emulator, proxy


def assumed_role_count() -> int:
    return len(sts_backends[ACCOUNT_ID]["aws"].assumed_roles)


async def test_plain_get_orders_reaches_sp_api_with_the_lwa_token(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    status, headers, body = await get(proxy, ORDERS_TEST_CASE_200)

    assert status == 200, body
    assert json.loads(body)["payload"]["Orders"]
    assert headers["x-amzn-RequestId"]
    received = last_received(emulator)
    (token,) = header(received, "x-amz-access-token")
    assert token.startswith("Atza|")
    assert header(received, "x-amzn-access-token") == []
    assert header(received, "authorization") == []  # LWA-only: no aws section
    assert emulator_state(emulator).lwa_calls["refresh_token"] == 1


async def test_signed_request_with_moto_sts_passes_strict_signature_checks(
    aiohttp_server: ServerFactory, clock: FakeClock, moto_sts: MotoSts, start_proxy: StartProxy
) -> None:
    config = EmulatorConfig(clock=clock, extra_credentials=moto_key_lookup(moto_sts))
    emulator = await aiohttp_server(create_emulator_app(config))
    proxy = await start_proxy(settings_for(emulator, config, aws=moto_aws_settings(moto_sts)))

    status, _, body = await get(proxy, ORDERS_TEST_CASE_200)

    assert status == 200, body
    received = last_received(emulator)
    assert received.signature_ok is True
    (session_token,) = header(received, "x-amz-security-token")
    (authorization,) = header(received, "authorization")
    access_key_id = authorization.split("Credential=")[1].split("/")[0]
    found = moto_sts.assumed_secret(access_key_id)
    assert found is not None
    assert found[1] == session_token
    assert "x-amz-access-token" in authorization.split("SignedHeaders=")[1].split(",")[0]


async def test_one_lwa_call_and_one_assume_role_for_a_burst_and_after(
    aiohttp_server: ServerFactory, clock: FakeClock, moto_sts: MotoSts, start_proxy: StartProxy
) -> None:
    emulator, proxy = await signed_pair(aiohttp_server, clock, moto_sts, start_proxy)
    roles_before = assumed_role_count()

    statuses = await asyncio.gather(*(get(proxy, ORDERS_TEST_CASE_200) for _ in range(100)))
    assert [status for status, _, _ in statuses] == [200] * 100
    assert emulator_state(emulator).lwa_calls["refresh_token"] == 1
    assert assumed_role_count() - roles_before == 1

    for _ in range(200):
        status, _, _ = await get(proxy, ORDERS_TEST_CASE_200)
        assert status == 200
    assert emulator_state(emulator).lwa_calls["refresh_token"] == 1
    assert assumed_role_count() - roles_before == 1
    assert all(r.signature_ok for r in emulator_state(emulator).received)


async def test_tokens_near_expiry_are_refreshed_and_expired_ones_never_sent(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    config = EmulatorConfig(clock=clock, token_lifetime_s=60, rate_per_s=1000, burst=1000)
    emulator = await aiohttp_server(create_emulator_app(config))
    proxy = await start_proxy(settings_for(emulator, config))

    for _ in range(60):  # ten minutes of fake time, ten token lifetimes
        answers = await asyncio.gather(*(get(proxy, ORDERS_TEST_CASE_200) for _ in range(3)))
        assert [status for status, _, _ in answers] == [200] * 3, answers[0][2]
        clock.advance(10)
    state = emulator_state(emulator)
    assert all(received.status == 200 for received in state.received), "a token was refused"
    assert 10 <= state.lwa_calls["refresh_token"] <= 14  # about one per lifetime, not per request


async def test_every_method_with_a_json_body_arrives_byte_identical_and_signed(
    aiohttp_server: ServerFactory, clock: FakeClock, moto_sts: MotoSts, start_proxy: StartProxy
) -> None:
    emulator, proxy = await signed_pair(aiohttp_server, clock, moto_sts, start_proxy)
    body = json.dumps({"sku": "MY SKU/1", "note": "héllo ✓", "qty": 3}, ensure_ascii=False).encode()

    for method in ("POST", "PUT", "PATCH", "DELETE"):
        request = build_request(
            method,
            "/listings/2021-08-01/items/A1SELLER/MY%20SKU%2F1?marketplaceIds=ATVPDKIKX0DER",
            [("Content-Type", "application/json; charset=utf-8")],
            body,
        )
        await raw_request("127.0.0.1", proxy.port or 0, request)
        received = last_received(emulator)
        assert received.method == method
        assert received.body == body
        assert received.signature_ok is True
        assert header(received, "content-type") == ["application/json; charset=utf-8"]


async def test_expect_100_continue_gets_continue_before_the_body_is_sent(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits for the 100."""
    settings = settings_for(emulator, emulator_config)
    proxy = await start_proxy(
        dataclasses.replace(
            settings, listen=dataclasses.replace(settings.listen, max_body_bytes=4096)
        )
    )
    body = json.dumps({"note": "x" * 2000}).encode()
    target = "/listings/2021-08-01/items/A1SELLER/SKU1?marketplaceIds=ATVPDKIKX0DER"
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        head = build_request("PUT", target, [("Expect", "100-continue")], body)[: -len(body)]
        writer.write(head)
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        async with asyncio.timeout(5):
            response = await read_response(reader)
    finally:
        writer.close()
    assert response.status != 100
    assert last_received(emulator).body == body

    # Too large by its Content-Length: refused at once, with no 100 and no body read.
    big = build_request("PUT", target, [("Expect", "100-continue")], b"y" * 5000)[:-5000]
    refused = await raw_request("127.0.0.1", proxy.port or 0, big)
    assert refused.status == 413
    assert refused.header("x-spapi-proxy-error") == "RequestTooLarge"

    # An expectation HTTP/1.1 doesn't define: 417 in SP-API's shape.
    odd = build_request("PUT", target, [("Expect", "something-else")], b"{}")
    answered = await raw_request("127.0.0.1", proxy.port or 0, odd)
    assert answered.status == 417
    assert json.loads(answered.body)["errors"][0]["code"] == "InvalidInput"
    assert b"something-else" not in answered.body  # the client's value is not echoed


async def test_get_goes_upstream_without_body_or_framing_headers(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    request = build_request("GET", ORDERS_TEST_CASE_200, body=b'{"oops": "a body on a GET"}')
    response = await raw_request("127.0.0.1", proxy.port or 0, request)

    assert response.status == 200
    received = last_received(emulator)
    assert received.body == b""
    assert header(received, "content-length") == []
    assert header(received, "transfer-encoding") == []


async def test_query_meaning_is_kept_and_no_bare_plus_goes_upstream(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    target = (
        "/orders/v0/orders?MarketplaceIds=ATVPDKIKX0DER,A1PA6795UKMFR9"
        "&BuyerEmail=a+b%40example.com&SellerOrderId=caf%c3%a9%201"
        "&NextToken=ab/c%2Bd==&Empty=&Empty=again"
    )
    await raw_request("127.0.0.1", proxy.port or 0, build_request("GET", target))

    sent_query = last_received(emulator).raw_target.partition("?")[2]
    assert sent_query == (
        "MarketplaceIds=ATVPDKIKX0DER%2CA1PA6795UKMFR9"
        "&BuyerEmail=a%20b%40example.com&SellerOrderId=caf%C3%A9%201"
        "&NextToken=ab%2Fc%2Bd%3D%3D&Empty=&Empty=again"
    )
    assert "+" not in sent_query


async def test_raw_path_reaches_upstream_byte_identical(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    for path in (
        "/listings/2021-08-01/items/A1SELLER/MY%20SKU%2F1",
        "/listings/2021-08-01/items/A1SELLER/100%25%7Ecotton",
    ):
        await raw_request("127.0.0.1", proxy.port or 0, build_request("GET", path))
        assert last_received(emulator).raw_target == path


async def test_owned_headers_from_the_client_never_reach_upstream(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    client_headers = [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=CLIENT/x, Signature=client"),
        ("x-amz-access-token", "Atza|client-token"),
        ("x-amzn-access-token", "Atza|client-misnamed-token"),
        ("x-amz-security-token", "client-session-token"),
        ("x-amz-date", "20000101T000000Z"),
        ("X-Custom-Trace", "kept-once"),
    ]
    request = build_request("GET", ORDERS_TEST_CASE_200, client_headers)
    response = await raw_request("127.0.0.1", proxy.port or 0, request)

    assert response.status == 200
    assert response.header("x-amzn-RequestId")
    received = last_received(emulator)
    sent = json.dumps(received.headers)
    for value in ("client-token", "client-misnamed-token", "client-session-token", "CLIENT/x"):
        assert value not in sent
    assert header(received, "x-custom-trace") == ["kept-once"]
    assert header(received, "host") == [f"127.0.0.1:{emulator.port}"]
    assert len(header(received, "x-amz-access-token")) == 1


async def test_misnamed_header_is_only_sent_when_configured(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    settings = settings_for(emulator, emulator_config)
    lwa = dataclasses.replace(
        settings.lwa, token_headers=("x-amz-access-token", "x-amzn-access-token")
    )
    proxy = await start_proxy(dataclasses.replace(settings, lwa=lwa))
    status, _, _ = await get(proxy, ORDERS_TEST_CASE_200)

    assert status == 200
    received = last_received(emulator)
    assert header(received, "x-amzn-access-token") == header(received, "x-amz-access-token")


async def test_sp_api_errors_reach_the_client_unchanged(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    status, headers, body = await get(
        proxy, "/orders/v0/orders?CreatedAfter=TEST_CASE_400&MarketplaceIds=ATVPDKIKX0DER"
    )
    assert status == 400
    assert "x-spapi-proxy-error" not in headers
    assert json.loads(body)["errors"][0]["code"] == "InvalidInput"


async def test_compressed_answers_reach_the_client_decodable(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    import gzip

    from aiohttp import web

    document = {"payload": {"Orders": [{"AmazonOrderId": "902-3159896-1390916"}] * 50}}
    seen_accept_encoding: list[str | None] = []

    async def gzipped(request: web.Request) -> web.Response:
        seen_accept_encoding.append(request.headers.get("Accept-Encoding"))
        if "gzip" not in request.headers.get("Accept-Encoding", ""):
            return web.json_response(document)
        body = gzip.compress(json.dumps(document).encode())
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    app = web.Application()
    app.router.add_get("/orders/v0/orders", gzipped)
    upstream_server = await aiohttp_server(app)
    settings = settings_for(emulator, emulator_config)
    upstream = dataclasses.replace(
        settings.upstream, endpoint=f"http://127.0.0.1:{upstream_server.port}"
    )
    proxy = await start_proxy(dataclasses.replace(settings, upstream=upstream))

    url = f"http://127.0.0.1:{proxy.port}/orders/v0/orders"
    # aiohttp's client asks for gzip and decodes it
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert await response.json() == document
    plain = await raw_request("127.0.0.1", proxy.port, build_request("GET", "/orders/v0/orders"))
    assert json.loads(plain.body) == document
    assert seen_accept_encoding[-1] is None  # the proxy added no Accept-Encoding of its own
