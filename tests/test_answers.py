"""Answers the proxy serialises itself: the exact bytes a client gets, keep-alive by HTTP
version, Date when the upstream sent none, and bodyless statuses left to aiohttp."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig
from proxy.server.answers import Answer, answer_head
from proxy.server.run import RunningServer
from tests.conftest import StartProxy, settings_for

Canned = Callable[[bytes], bytes]  # request head -> raw answer
BODY = b'{"ok":true}'


def answer(status_line: str, fields: list[str], body: bytes = BODY) -> bytes:
    head = "".join(f"{field}\r\n" for field in fields)
    return f"{status_line}\r\n{head}\r\n".encode() + body


CREATED = answer(
    "HTTP/1.1 201 Created",
    [
        "Content-Type: application/json",
        "Set-Cookie: a=1",
        "Set-Cookie: b=2",
        "x-amzn-RequestId: rid-answers-1",
        f"Content-Length: {len(BODY)}",
    ],
)


@pytest.fixture
async def canned_upstream() -> AsyncIterator[tuple[list[bytes], Callable[[bytes], None], str]]:
    """A raw HTTP/1.1 upstream answering every request with the bytes set last."""
    current = [CREATED]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(current[0])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def set_answer(raw: bytes) -> None:
        current[0] = raw

    yield current, set_answer, f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


@pytest.fixture
async def proxy(
    canned_upstream: tuple[list[bytes], Callable[[bytes], None], str],
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> RunningServer:
    """The proxy in front of the canned upstream; the emulator still plays LWA."""
    settings = settings_for(emulator, emulator_config)
    upstream = dataclasses.replace(settings.upstream, endpoint=canned_upstream[2])
    return await start_proxy(dataclasses.replace(settings, upstream=upstream))


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: str
) -> tuple[str, list[str], bytes]:
    """Send one request on an open connection; the status line, field lines and body back."""
    writer.write(request.encode())
    async with asyncio.timeout(5):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        status_line, *fields = head[:-4].split("\r\n")
        lengths = values(fields, "content-length")
        body = await reader.readexactly(int(lengths[0])) if lengths else b""
    return status_line, fields, body


def values(fields: list[str], name: str) -> list[str]:
    return [f.split(":", 1)[1].strip() for f in fields if f.split(":", 1)[0].lower() == name]


GET = "GET /orders/v0/orders HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_small_answer_arrives_exactly_and_the_connection_is_kept(
    proxy: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.access")
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        for _ in range(2):  # the second one proves the connection was kept alive
            status_line, fields, body = await exchange(reader, writer, GET)
            assert status_line == "HTTP/1.1 201 Created"
            assert body == BODY
            assert values(fields, "content-length") == [str(len(BODY))]
            assert values(fields, "set-cookie") == ["a=1", "b=2"]  # both, in order
            assert values(fields, "x-amzn-requestid") == ["rid-answers-1"]
            assert len(values(fields, "date")) == 1  # added: the upstream sent none
            assert values(fields, "connection") == []  # HTTP/1.1 keeps alive by default
            assert values(fields, "transfer-encoding") == []
    finally:
        writer.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "proxy.access"]
    assert lines
    assert lines[-1].startswith("GET /orders/v0/orders 201 ")
    assert lines[-1].split(" ")[-2] == "rid-answers-1"  # then the request id


async def test_keep_alive_follows_the_clients_http_version_and_wish(
    proxy: RunningServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        request = "GET /orders/v0/orders HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
        for _ in range(2):
            status_line, fields, body = await exchange(reader, writer, request)
            assert status_line == "HTTP/1.0 201 Created"
            assert values(fields, "connection") == ["keep-alive"]
            assert body == BODY

        closing = "GET /orders/v0/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        status_line, fields, body = await exchange(reader, writer, closing)
        assert status_line == "HTTP/1.1 201 Created"
        assert values(fields, "connection") == ["close"]
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # and the proxy closed it
    finally:
        writer.close()


async def test_the_upstreams_date_is_kept_and_not_doubled(
    canned_upstream: tuple[list[bytes], Callable[[bytes], None], str], proxy: RunningServer
) -> None:
    date = "Thu, 26 Nov 2026 03:00:00 GMT"
    canned_upstream[1](answer("HTTP/1.1 200 OK", [f"Date: {date}", f"Content-Length: {len(BODY)}"]))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        _, fields, _ = await exchange(reader, writer, GET)
    finally:
        writer.close()
    assert values(fields, "date") == [date]


@pytest.mark.parametrize("status_line", ["HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified"])
async def test_bodyless_statuses_get_no_body_whatever_their_length_says(
    canned_upstream: tuple[list[bytes], Callable[[bytes], None], str],
    proxy: RunningServer,
    status_line: str,
) -> None:
    canned_upstream[1](answer(status_line, ["Content-Length: 0"], b""))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        for _ in range(2):  # and the connection still works afterwards
            got_status, _, body = await exchange(reader, writer, GET)
            assert got_status == status_line
            assert body == b""
    finally:
        writer.close()


def test_force_close_is_honoured() -> None:
    answer = Answer(200, "OK", [], b"")
    answer.force_close()
    assert answer.keep_alive is False
    head = answer_head(
        False, 200, "OK", [], keep_alive=False, needs_date=False, framing="Content-Length: 0\r\n"
    )
    assert head == b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def test_a_cr_or_lf_in_the_head_is_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        answer_head(
            False,
            200,
            "OK",
            [("x-hint", "one\r\nInjected: yes")],
            keep_alive=True,
            needs_date=False,
            framing="Content-Length: 0\r\n",
        )
