"""Request ids: the client's X-Request-Id (or one the proxy makes) is logged, forwarded upstream,
echoed on the answer, and carried by the proxy's own errors."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig
from proxy.server.run import RunningServer
from tests.conftest import ORDERS_TEST_CASE_200, StartProxy, emulator_state, settings_for
from tests.support.rawhttp import RawResponse, build_request, raw_request


async def send(
    proxy: RunningServer, target: str, headers: list[tuple[str, str]] | None = None
) -> RawResponse:
    return await raw_request("127.0.0.1", proxy.port or 0, build_request("GET", target, headers))


def forwarded_ids(emulator: TestServer) -> list[str]:
    received = emulator_state(emulator).received[-1]
    return [value for name, value in received.headers if name.lower() == "x-request-id"]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "proxy.access"]


def echoed(response: RawResponse) -> list[str]:
    return [value for name, value in response.headers if name.lower() == "x-request-id"]


async def test_a_clients_request_id_is_forwarded_unchanged_echoed_and_logged(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    client_id = "order-sync.7f3a:batch/42_x~1"
    response = await send(proxy, ORDERS_TEST_CASE_200, [("X-Request-Id", client_id)])

    assert response.status == 200
    assert echoed(response) == [client_id]
    assert forwarded_ids(emulator) == [client_id]
    assert access_lines(caplog)[-1].endswith(f" {client_id}")


async def test_without_one_the_proxy_makes_a_request_id_and_uses_it_everywhere(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    first = await send(proxy, ORDERS_TEST_CASE_200)
    second = await send(proxy, ORDERS_TEST_CASE_200)

    (made,) = echoed(second)
    assert echoed(first) != [made]  # one per request
    assert 8 <= len(made) <= 64
    assert made.isascii()
    assert made.isprintable()
    assert " " not in made
    assert forwarded_ids(emulator) == [made]
    assert access_lines(caplog)[-1].endswith(f" {made}")


@pytest.mark.parametrize(
    "sent",
    [
        "x" * 201,  # longer than any id a tracing system makes
        "has space",
        "caf\u00e9",  # not ASCII
        "",
    ],
)
async def test_a_request_id_too_long_or_not_visible_ascii_is_replaced(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
    sent: str,
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    response = await send(proxy, ORDERS_TEST_CASE_200, [("X-Request-Id", sent)])

    assert response.status == 200
    (made,) = echoed(response)
    assert made != sent
    assert made.isascii()
    assert made.isprintable()
    assert " " not in made
    assert forwarded_ids(emulator) == [made]  # the client's copy does not cross
    assert access_lines(caplog)[-1].split(" ")[-1] == made


async def test_two_request_ids_from_a_client_are_replaced_by_one(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    response = await send(
        proxy, ORDERS_TEST_CASE_200, [("X-Request-Id", "one"), ("X-Request-Id", "two")]
    )

    (made,) = echoed(response)
    assert made not in ("one", "two")
    assert forwarded_ids(emulator) == [made]


async def test_the_proxys_own_errors_carry_the_request_id_in_header_and_body(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    response = await send(
        proxy, ORDERS_TEST_CASE_200, [("X-Request-Id", "rid-1"), ("x-spapi-profile", "nope")]
    )

    assert response.status == 400
    assert response.header("x-spapi-proxy-error")
    assert echoed(response) == ["rid-1"]
    assert json.loads(response.body)["requestId"] == "rid-1"
    assert access_lines(caplog)[-1].endswith(" rid-1")

    made = await send(proxy, "/_proxy/nothing-here")
    assert made.status == 404
    (made_id,) = echoed(made)
    assert json.loads(made.body)["requestId"] == made_id


async def test_own_endpoints_echo_the_request_id(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    response = await send(proxy, "/_proxy/health", [("X-Request-Id", "probe-1")])

    assert response.status == 200
    assert echoed(response) == ["probe-1"]


async def test_a_request_the_parser_refuses_gets_an_id_of_its_own(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    response = await raw_request(
        "127.0.0.1", proxy.port or 0, b"GET /orders/v0/orders HTTP/1.1\r\nBad Header\r\n\r\n"
    )

    assert response.status == 400
    (made,) = echoed(response)
    assert json.loads(response.body)["requestId"] == made
