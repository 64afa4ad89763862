"""A hostile SP-API behind the proxy: answers that trickle, never end their head, repeat interim
answers or frame their body in contradicting ways. Each one is a raw asyncio server that writes
exactly the bytes a test needs; LWA is the emulator's."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from proxy.config.settings import Settings, UpstreamSettings
from proxy.emulator import EmulatorConfig
from tests.conftest import ORDERS_TEST_CASE_200, StartProxy, settings_for
from tests.support.rawhttp import RawResponse, build_request, raw_request

# Writes the answer (slowly, endlessly, ...) on the connection it is given, after the request.
Behaviour = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]
TIMEOUT_S = 1.0  # upstream.timeout_s in these tests
MARGIN_S = 1.5  # the watchdog's tick, a loaded machine, the LWA fetch


@dataclasses.dataclass
class HostileUpstream:
    behaviour: Behaviour
    port: int = 0
    requests: int = 0
    serving: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    arrived: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)

    async def requested(self, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.requests >= count)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                async with self.arrived:
                    self.requests += 1
                    self.arrived.notify_all()
                await self.behaviour(head, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


StartHostile = Callable[[Behaviour], Awaitable[HostileUpstream]]


@pytest.fixture
async def hostile() -> AsyncIterator[StartHostile]:
    started: list[tuple[asyncio.Server, HostileUpstream]] = []

    async def start(behaviour: Behaviour) -> HostileUpstream:
        upstream = HostileUpstream(behaviour)
        server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
        upstream.port = server.sockets[0].getsockname()[1]
        started.append((server, upstream))
        return upstream

    yield start
    for server, upstream in started:
        server.close()
        for task in upstream.serving:  # connections still dripping
            task.cancel()
        await asyncio.gather(*upstream.serving, return_exceptions=True)
        await server.wait_closed()


def settings_against(
    emulator: TestServer, upstream: HostileUpstream, max_connections: int = 100
) -> Settings:
    settings = settings_for(emulator, EmulatorConfig())
    return dataclasses.replace(
        settings,
        upstream=UpstreamSettings(
            endpoint=f"http://127.0.0.1:{upstream.port}",
            timeout_s=TIMEOUT_S,
            max_connections=max_connections,
        ),
    )


async def fetch(port: int) -> tuple[RawResponse, float]:
    started = time.monotonic()
    response = await raw_request("127.0.0.1", port, build_request("GET", ORDERS_TEST_CASE_200))
    return response, time.monotonic() - started


def error_code(response: RawResponse) -> str:
    return str(json.loads(response.body)["errors"][0]["code"])


AnswerOf = Callable[[Behaviour], Awaitable[tuple[RawResponse, float]]]


@pytest.fixture
def answer_of(emulator: TestServer, start_proxy: StartProxy, hostile: StartHostile) -> AnswerOf:
    """What a client gets through the proxy from an upstream that behaves so, and how long it
    waited for it."""

    async def answer(behaviour: Behaviour) -> tuple[RawResponse, float]:
        upstream = await hostile(behaviour)
        proxy = await start_proxy(settings_against(emulator, upstream))
        return await fetch(proxy.port)

    return answer


async def drip(writer: asyncio.StreamWriter, data: bytes, pause_s: float) -> None:
    for index in range(len(data)):
        writer.write(data[index : index + 1])
        await writer.drain()
        await asyncio.sleep(pause_s)


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def dripping_head(head: bytes, writer: asyncio.StreamWriter) -> None:
    await drip(writer, OK, 0.1)  # ~6 s for the whole answer, a byte every 0.1 s


async def endless_header_lines(head: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for number in range(1_000):
        writer.write(f"X-Line-{number}: more\r\n".encode())
        await writer.drain()
        await asyncio.sleep(0.05)


async def endless_continues(head: bytes, writer: asyncio.StreamWriter) -> None:
    for _ in range(1_000):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.4)  # the deadline comes before a 6th (refused as too many)


@pytest.mark.parametrize(
    "behaviour", [dripping_head, endless_header_lines, endless_continues], ids=lambda b: b.__name__
)
async def test_an_answer_head_not_in_within_timeout_s_is_504_upstream_timeout(
    behaviour: Behaviour, answer_of: AnswerOf
) -> None:
    response, took = await answer_of(behaviour)
    assert response.status == 504
    assert error_code(response) == "UpstreamTimeout"
    assert response.header("x-spapi-proxy-error") == "UpstreamTimeout"
    assert took < TIMEOUT_S + MARGIN_S


async def six_quick_continues(head: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 6 + OK)
    await writer.drain()


async def status_000(head: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 000 OK\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()


async def status_600(head: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 600 Beyond\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()


@pytest.mark.parametrize(
    "behaviour", [six_quick_continues, status_000, status_600], ids=lambda b: b.__name__
)
async def test_too_many_interim_answers_or_a_status_outside_100_to_599_is_502(
    behaviour: Behaviour, answer_of: AnswerOf
) -> None:
    response, took = await answer_of(behaviour)
    assert response.status == 502
    assert error_code(response) == "UpstreamUnreachable"
    assert took < TIMEOUT_S


async def test_two_trickling_answers_block_the_pool_only_until_their_deadline(
    emulator: TestServer, start_proxy: StartProxy, hostile: StartHostile
) -> None:
    async def first_two_trickle(head: bytes, writer: asyncio.StreamWriter) -> None:
        if b"TRICKLE" in head:
            await drip(writer, OK, 0.1)
        else:
            writer.write(OK)
            await writer.drain()

    upstream = await hostile(first_two_trickle)
    proxy = await start_proxy(settings_against(emulator, upstream, max_connections=2))
    trickling = build_request("GET", ORDERS_TEST_CASE_200.replace("TEST_CASE_200", "TRICKLE"))
    started = time.monotonic()
    slow = [asyncio.create_task(raw_request("127.0.0.1", proxy.port, trickling)) for _ in range(2)]
    async with asyncio.timeout(3):
        await upstream.requested(2)
    await asyncio.sleep(TIMEOUT_S / 2)  # both connections taken; the next caller waits
    response, _ = await fetch(proxy.port)
    assert response.status == 200
    assert response.body == b"{}"
    assert time.monotonic() - started < TIMEOUT_S + MARGIN_S
    assert [(await task).status for task in slow] == [504, 504]


async def test_content_length_2_comma_2_reaches_the_client_as_one_length(
    answer_of: AnswerOf,
) -> None:
    async def listed_twice(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    response, _ = await answer_of(listed_twice)
    assert response.status == 200
    assert response.body == b"{}"
    assert [value for name, value in response.headers if name.lower() == "content-length"] == ["2"]


async def test_content_lengths_that_disagree_are_502_upstream_unreachable(
    answer_of: AnswerOf,
) -> None:
    async def disagreeing(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
        await writer.drain()

    response, _ = await answer_of(disagreeing)
    assert response.status == 502
    assert error_code(response) == "UpstreamUnreachable"
    message = json.loads(response.body)["errors"][0]["message"]
    assert "Content-Length" in message
    assert "Could not connect" not in message  # it did connect; the answer was at fault


async def test_a_head_of_more_than_100_fields_is_502(answer_of: AnswerOf) -> None:
    async def crowded(head: bytes, writer: asyncio.StreamWriter) -> None:
        fields = b"".join(b"X-F%d: v\r\n" % n for n in range(150))
        writer.write(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\n{}")
        await writer.drain()

    response, _ = await answer_of(crowded)
    assert response.status == 502
    assert error_code(response) == "UpstreamUnreachable"
