"""Bad input: each case gets a clear answer, and the proxy never connects anywhere but the upstream.

A canary server listens on another loopback address (127.0.0.2); every case that names it as a
destination (absolute-form targets, spoofed Host, CONNECT, `//host` paths) must leave it untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig, ReceivedRequest, create_emulator_app
from proxy.secret import Secret
from proxy.server.run import RunningServer
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    settings_for,
)
from tests.support.clock import FakeClock
from tests.support.rawhttp import RawResponse, raw_request

CLIENT_KEY = "bad-input-client-key-0123"
CANARY = "127.0.0.2:{canary}"
LIMIT = 4096


def request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str = "127.0.0.1",
    key: bool = True,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if key:
        lines.append(f"x-spapi-proxy-key: {CLIENT_KEY}")
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body and not any(
        name.lower() in ("content-length", "transfer-encoding") for name, _ in headers or []
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


Check = Callable[[ReceivedRequest], None]


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    status: int
    code: str | None  # the proxy's error code, or None: forwarded, the upstream answered
    check: Check | None = None  # for forwarded cases: what the upstream received


def body_is(expected: bytes) -> Check:
    def check(received: ReceivedRequest) -> None:
        assert received.body == expected

    return check


def target_is(expected: str) -> Check:
    def check(received: ReceivedRequest) -> None:
        assert received.raw_target == expected

    return check


def path_kept_as_path(received: ReceivedRequest) -> None:
    assert received.raw_target.startswith("//127.0.0.2:")
    assert received.raw_target.endswith("/orders/v0/orders")


def no_client_auth(received: ReceivedRequest) -> None:
    names = [name.lower() for name, _ in received.headers]
    assert names.count("x-amz-access-token") == 1
    assert "authorization" not in names
    assert "x-spapi-proxy-key" not in names
    assert all("client" not in value for _, value in received.headers)


def host_is_upstream(received: ReceivedRequest) -> None:
    hosts = [value for name, value in received.headers if name.lower() == "host"]
    assert hosts == [hosts[0]]
    assert hosts[0].startswith("127.0.0.1:")


ORDERS = ORDERS_TEST_CASE_200
JSON = [("Content-Type", "application/json")]
CASES = [
    # malformed queries and percent-escapes: refused by the proxy
    Case(
        "query bad escape",
        request("GET", "/orders/v0/orders?CreatedAfter=%zz"),
        400,
        "InvalidInput",
    ),
    Case(
        "query lone percent",
        request("GET", "/orders/v0/orders?NextToken=abc%"),
        400,
        "InvalidInput",
    ),
    Case("query short escape", request("GET", "/orders/v0/orders?a=%4"), 400, "InvalidInput"),
    Case("query bad escape in key", request("GET", "/orders/v0/orders?%g1=1"), 400, "InvalidInput"),
    # escapes of bytes that are not UTF-8 keep their exact meaning
    Case(
        "query non-UTF-8 escape kept",
        request("GET", "/orders/v0/orders?a=%ff%FE"),
        400,
        None,
        target_is("/orders/v0/orders?a=%FF%FE"),
    ),
    # what HTTP itself forbids: refused by the parser, still in SP-API's shape
    Case(
        "raw invalid UTF-8 byte in target",
        b"GET /orders/v0/orders?a=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "InvalidInput",
    ),
    Case(
        "raw space in target",
        b"GET /orders/v0 /orders HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "InvalidInput",
    ),
    Case(
        "control character in target",
        b"GET /orders/\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "InvalidInput",
    ),
    Case(
        "header line too long", request("GET", ORDERS, [("X-Big", "a" * 9000)]), 400, "InvalidInput"
    ),
    Case(
        "too many headers",
        request("GET", ORDERS, [(f"X-H{i}", "v") for i in range(120)]),
        400,
        "InvalidInput",
    ),
    Case(
        "target too long", request("GET", "/orders/v0/orders?a=" + "b" * 9000), 400, "InvalidInput"
    ),
    Case(
        "NUL in a header value",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        400,
        "InvalidInput",
    ),
    Case(
        "Content-Length not a number",
        request("POST", "/feeds/2021-06-30/documents", [("Content-Length", "ten")], b"0123456789"),
        400,
        "InvalidInput",
    ),
    Case(
        "Content-Length and chunked together",
        request(
            "POST",
            "/x",
            [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            chunked(b"hello"),
        ),
        400,
        "InvalidInput",
    ),
    Case(
        "malformed chunk size",
        request(
            "POST",
            "/feeds/2021-06-30/documents",
            [("Transfer-Encoding", "chunked")],
            b"zz\r\nhello\r\n0\r\n\r\n",
        ),
        400,
        "InvalidInput",
    ),
    # bodies and limits
    Case(
        "declared body over the limit",
        request(
            "POST", "/feeds/2021-06-30/documents", [("Content-Length", str(LIMIT * 100))], b"x"
        ),
        413,
        "RequestTooLarge",
    ),
    Case(
        "chunked body over the limit",
        request(
            "POST",
            "/feeds/2021-06-30/documents",
            [("Transfer-Encoding", "chunked")],
            chunked(b"y" * LIMIT, b"y"),
        ),
        413,
        "RequestTooLarge",
    ),
    Case(
        "chunked body under the limit is forwarded with a length",
        request(
            "PUT",
            "/feeds/2021-06-30/documents",
            [("Transfer-Encoding", "chunked")],
            chunked(b'{"a":', b"1}"),
        ),
        404,
        None,
        body_is(b'{"a":1}'),
    ),
    # aiohttp parses the whole buffer first: the extra bytes make it refuse it all
    Case(
        "lying Content-Length (more bytes than declared)",
        request("POST", "/feeds/2021-06-30/documents", [("Content-Length", "5")], b"hello world"),
        400,
        "InvalidInput",
    ),
    Case(
        "non-JSON body is forwarded untouched",
        request("POST", "/feeds/2021-06-30/documents", JSON, b"{not json"),
        400,  # the emulator's createFeedDocument refuses it
        None,
        body_is(b"{not json"),
    ),
    Case(
        "binary body is forwarded untouched",
        request("POST", "/feeds/2021-06-30/documents", [], b"\x00\xff\x01 \r\n"),
        400,  # the emulator's createFeedDocument refuses it
        None,
        body_is(b"\x00\xff\x01 \r\n"),
    ),
    # not an open proxy
    Case(
        "absolute-form target",
        request("GET", "http://" + CANARY + "/orders/v0/orders"),
        400,
        "InvalidInput",
    ),
    Case(
        "absolute-form https target",
        request("GET", "https://" + CANARY + "/x"),
        400,
        "InvalidInput",
    ),
    Case("CONNECT", request("CONNECT", CANARY, host=CANARY), 400, "InvalidInput"),
    Case("spoofed Host", request("GET", ORDERS, host=CANARY), 200, None, host_is_upstream),
    Case(
        "spoofed X-Forwarded-Host and Forwarded",
        request("GET", ORDERS, [("X-Forwarded-Host", CANARY), ("Forwarded", "host=" + CANARY)]),
        200,
        None,
        host_is_upstream,
    ),
    Case(
        "path that looks like an authority",
        request("GET", "//" + CANARY + "/orders/v0/orders"),
        404,
        None,
        path_kept_as_path,
    ),
    Case("dot-dot segments", request("GET", "/orders/v0/../../admin"), 400, "InvalidInput"),
    Case("encoded dot-dot segments", request("GET", "/orders/%2e%2E/admin"), 400, "InvalidInput"),
    Case("single dot segment", request("GET", "/./orders/v0/orders"), 400, "InvalidInput"),
    # auth headers from the client
    Case(
        "empty client token headers",
        request("GET", ORDERS, [("x-amz-access-token", ""), ("Authorization", "")]),
        200,
        None,
        no_client_auth,
    ),
    Case(
        "duplicated client token headers",
        request(
            "GET",
            ORDERS,
            [
                ("x-amz-access-token", "Atza|client-1"),
                ("x-amz-access-token", "Atza|client-2"),
                ("x-amzn-access-token", "Atza|client-3"),
            ],
        ),
        200,
        None,
        no_client_auth,
    ),
    Case(
        "client bearer Authorization",
        request("GET", ORDERS, [("Authorization", "Bearer client-token")]),
        200,
        None,
        no_client_auth,
    ),
    Case("missing proxy key", request("GET", ORDERS, key=False), 401, "ProxyUnauthorized"),
    Case(
        "wrong proxy key",
        request("GET", ORDERS, [("x-spapi-proxy-key", "nope")], key=False),
        401,
        "ProxyUnauthorized",
    ),
    Case(
        "empty proxy key",
        request("GET", ORDERS, [("x-spapi-proxy-key", "")], key=False),
        401,
        "ProxyUnauthorized",
    ),
    Case(
        "right and wrong proxy key together",
        request("GET", ORDERS, [("x-spapi-proxy-key", "nope")]),
        401,
        "ProxyUnauthorized",
    ),
    Case("unknown own endpoint", request("GET", "/_proxy/admin"), 404, "NotFound"),
]


@pytest.fixture
async def canary(aiohttp_server: ServerFactory) -> tuple[TestServer, list[str]]:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text="canary")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return await aiohttp_server(app, host="127.0.0.2"), seen


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_bad_input(
    case: Case,
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    start_proxy: StartProxy,
    canary: tuple[TestServer, list[str]],
) -> None:
    canary_server, canary_seen = canary
    config = EmulatorConfig(clock=clock)
    emulator = await aiohttp_server(create_emulator_app(config))
    settings = settings_for(emulator, config, auth_token=Secret(CLIENT_KEY), max_body_bytes=LIMIT)
    proxy: RunningServer = await start_proxy(settings)
    raw = case.raw.replace(b"{canary}", str(canary_server.port).encode())

    response = await raw_request("127.0.0.1", proxy.port, raw)

    assert response.status == case.status, response.body[:300]
    received = emulator_state(emulator).received
    if case.code is None:
        assert response.header("x-spapi-proxy-error") is None
        assert received, "the request should have been forwarded"
        if case.check is not None:
            case.check(received[0])
    else:
        assert_proxy_error(response, case.code)
        assert not received, "a refused request reached the upstream"
    assert canary_seen == [], "the proxy connected somewhere other than its upstream"


def assert_proxy_error(response: RawResponse, code: str) -> None:
    assert response.header("x-spapi-proxy-error") == code
    (entry,) = json.loads(response.body)["errors"]
    assert entry["code"] == code
    assert entry["message"]


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 30
