"""The upstream HTTP client against real local servers: aiohttp ones, and raw asyncio ones that
write exactly the bytes a test needs (malformed answers, odd framing, dropped connections)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web

from proxy.http import (
    UpstreamConnectError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeoutError,
    request_head,
)
from proxy.http.connection import HIGH_WATER
from proxy.http.parse import MAX_FIELDS
from tests.conftest import ServerFactory
from tests.support.moto_sts import free_port

MIB = 1024 * 1024


# --- a raw server: each connection's requests go to a script that returns the answer bytes ------


@dataclass
class Request:
    head: bytes
    body: bytes
    connection: int  # which connection (0, 1, ...) it came on
    index: int  # its place on that connection (0, 1, ...)

    @property
    def line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def header_lines(self) -> list[bytes]:
        return self.head.split(b"\r\n")[1:]


# Returns the bytes to answer with, or None to close the connection without answering.
Script = Callable[[Request], Awaitable[bytes | None]]


@dataclass
class RawServer:
    script: Script
    port: int = 0
    connections: int = 0
    open_connections: int = 0
    requests: list[Request] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.open_connections += 1
        try:
            for index in range(1_000_000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                request = Request(head[:-4], body, number, index)
                self.requests.append(request)
                answer = await self.script(request)
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open_connections -= 1
            self.closed.set()
            writer.close()


RawServerFactory = Callable[[Script], Awaitable[RawServer]]


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServerFactory]:
    servers: list[RawServer] = []

    async def start(script: Script) -> RawServer:
        server = await RawServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def answer(body: bytes = b"ok", status: str = "200 OK", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def replying(*answers: bytes) -> Script:
    """A script answering the n-th request with answers[n] (the last one repeated)."""
    seen = 0

    async def script(request: Request) -> bytes:
        nonlocal seen
        seen += 1
        return answers[min(seen, len(answers)) - 1]

    return script


def host_headers(pool: UpstreamPool) -> list[tuple[str, str]]:
    return [("Host", f"{pool.host}:{pool.port}")]


async def get(
    pool: UpstreamPool, target: str = "/", method: str = "GET", body: bytes | None = None
) -> tuple[UpstreamResponse, bytes]:
    headers = host_headers(pool)
    if body is not None:
        headers.append(("Content-Length", str(len(body))))
    response = await pool.request(method, target, headers, body)
    try:
        return response, await response.read()
    finally:
        response.release()


async def wait_for(condition: Callable[[], bool]) -> None:
    """Polls `condition` for up to 3 s."""
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 3 s")


# --- keep-alive and the pool ------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(aiohttp_server: ServerFactory) -> None:
    peers: set[object] = set()

    async def hello(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return web.json_response({"n": len(peers)}, headers={"x-amzn-RequestId": "r1"})

    app = web.Application()
    app.router.add_get("/hello", hello)
    server = await aiohttp_server(app)
    async with UpstreamPool(str(server.make_url("")).rstrip("/")) as pool:
        for _ in range(10):
            response, body = await get(pool, "/hello")
            assert response.status == 200
            assert response.reason == "OK"
            assert response.headers["X-AMZN-REQUESTID"] == "r1"
            assert body == b'{"n": 1}'
        assert len(peers) == 1
        assert pool.connections == pool.idle_connections == 1


async def test_pool_never_opens_more_than_max_connections(aiohttp_server: ServerFactory) -> None:
    peers: set[object] = set()
    in_flight = most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = await aiohttp_server(app)
    limit = 4
    async with UpstreamPool(str(server.make_url("")), max_connections=limit) as pool:
        seen: list[int] = []

        async def one() -> bytes:
            seen.append(pool.connections)
            _, body = await get(pool, "/slow")
            seen.append(pool.connections)
            return body

        bodies = await asyncio.gather(*(one() for _ in range(limit + 5)))
        assert bodies == [b"done"] * (limit + 5)
        assert max(seen) <= limit
        assert most <= limit
        assert len(peers) == limit
        assert pool.connections == limit


async def test_a_cancelled_waiter_gives_its_turn_away(raw_server: RawServerFactory) -> None:
    release_first = asyncio.Event()

    async def script(request: Request) -> bytes:
        if request.connection == 0 and request.index == 0:
            await release_first.wait()
        return answer(b"ok")

    server = await raw_server(script)
    async with UpstreamPool(server.url, max_connections=1) as pool:
        first = asyncio.create_task(get(pool, "/first"))
        await wait_for(lambda: len(server.requests) == 1)
        waiting = asyncio.create_task(get(pool, "/cancelled"))
        third = asyncio.create_task(get(pool, "/third"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        release_first.set()
        assert (await first)[1] == b"ok"
        assert (await third)[1] == b"ok"
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert [r.line for r in server.requests] == [
            b"GET /first HTTP/1.1",
            b"GET /third HTTP/1.1",
        ]
        assert server.connections == 1
        assert pool.connections == 1


async def test_idle_connections_expire(raw_server: RawServerFactory) -> None:
    server = await raw_server(replying(answer(b"ok")))
    async with UpstreamPool(server.url, idle_timeout_s=0.1) as pool:
        await get(pool)
        assert pool.idle_connections == 1
        await wait_for(lambda: pool.connections == 0)
        await wait_for(lambda: server.open_connections == 0)
        await get(pool)
        assert server.connections == 2


async def test_server_closing_an_idle_connection_is_noticed(raw_server: RawServerFactory) -> None:
    closing: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(b"ok"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # an upstream closing an idle keep-alive connection
        closing.append(writer)

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        async with UpstreamPool(f"http://127.0.0.1:{port}") as pool:
            await get(pool)
            assert pool.idle_connections == 1
            await wait_for(lambda: pool.connections == 0)
            assert pool.idle_connections == 0
    finally:
        tcp.close()
        await tcp.wait_closed()


# --- framing ----------------------------------------------------------------------------------


async def test_content_length_chunked_and_close_delimited_bodies(
    raw_server: RawServerFactory,
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    close_delimited = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    server = await raw_server(replying(answer(b"fixed"), chunked, answer(b""), close_delimited))
    async with UpstreamPool(server.url) as pool:
        assert (await get(pool))[1] == b"fixed"
        assert (await get(pool))[1] == b"hello 0123456789"
        assert (await get(pool))[1] == b""
        assert (await get(pool))[1] == b"until the end"
        assert server.connections == 1  # all on one connection; the last one ended it
        await wait_for(lambda: pool.connections == 0)


async def test_answers_split_at_every_byte_parse_the_same(raw_server: RawServerFactory) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext\r\ndefg\r\n0\r\nT: 1\r\n\r\n"
    )
    trickle: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for data in (chunked, answer(b"second")):
            await reader.readuntil(b"\r\n\r\n")
            for index in range(len(data)):
                writer.write(data[index : index + 1])
                await writer.drain()
                await asyncio.sleep(0.0005)
            trickle.append(data)
        await reader.read()
        writer.close()

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        async with UpstreamPool(f"http://127.0.0.1:{port}") as pool:
            response, body = await get(pool)
            assert body == b"abcdefg"
            assert response.headers["x-a"] == "1"
            assert (await get(pool))[1] == b"second"
            assert pool.connections == 1
    finally:
        tcp.close()
        await tcp.wait_closed()


async def test_head_204_and_304_have_no_body(raw_server: RawServerFactory) -> None:
    async def script(request: Request) -> bytes:
        if request.line.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        if b"/204" in request.line:
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if b"/304" in request.line:
            return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: x\r\n\r\n"
        return answer(b"after")

    server = await raw_server(script)
    async with UpstreamPool(server.url) as pool:
        response, body = await get(pool, "/", "HEAD")
        assert (response.status, body, response.headers["Content-Length"]) == (200, b"", "1000")
        response, body = await get(pool, "/204")
        assert (response.status, body) == (204, b"")
        response, body = await get(pool, "/304")
        assert (response.status, body) == (304, b"")
        assert (await get(pool, "/"))[1] == b"after"
        assert server.connections == 1


async def test_interim_answers_are_skipped(raw_server: RawServerFactory) -> None:
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        + answer(b"final", "201 Created", "X-Final: yes")
    )
    server = await raw_server(replying(interim, answer(b"next")))
    async with UpstreamPool(server.url) as pool:
        response, body = await get(pool, "/", "POST", b"{}")
        assert (response.status, response.reason, body) == (201, "Created", b"final")
        assert "Link" not in response.headers
        assert response.headers["X-Final"] == "yes"
        assert (await get(pool))[1] == b"next"
        assert server.connections == 1


async def test_connection_close_from_the_server_is_not_reused(raw_server: RawServerFactory) -> None:
    server = await raw_server(replying(answer(b"bye", "200 OK", "Connection: close")))
    async with UpstreamPool(server.url) as pool:
        assert (await get(pool))[1] == b"bye"
        assert pool.connections == 0
        assert (await get(pool))[1] == b"bye"
        assert server.connections == 2


async def test_headers_keep_order_and_duplicates(raw_server: RawServerFactory) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mixed:  padded value \t\r\n"
        b"set-cookie: b=2\r\nX-Utf8: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n"
    )
    server = await raw_server(replying(raw))
    async with UpstreamPool(server.url) as pool:
        response, _ = await get(pool)
        assert list(response.headers.items()) == [
            ("Set-Cookie", "a=1"),
            ("X-Mixed", "padded value"),
            ("set-cookie", "b=2"),
            ("X-Utf8", "café"),
            ("Content-Length", "0"),
        ]
        assert response.headers.getall("SET-COOKIE") == ["a=1", "b=2"]


# --- what goes on the wire --------------------------------------------------------------------


async def test_target_and_headers_go_out_byte_exact(raw_server: RawServerFactory) -> None:
    server = await raw_server(replying(answer()))
    target = "/a/MY%20SKU%2F1?x=%2B&y=%2c&z"
    async with UpstreamPool(server.url) as pool:
        headers = [
            ("host", f"127.0.0.1:{server.port}"),
            ("X-Dup", "1"),
            ("x-dup", "2"),
            ("Content-Length", "4"),
        ]
        response = await pool.request("PUT", target, headers, b"data")
        response.release()
    (received,) = server.requests
    assert received.line == b"PUT /a/MY%20SKU%2F1?x=%2B&y=%2c&z HTTP/1.1"
    assert received.header_lines == [
        f"host: 127.0.0.1:{server.port}".encode(),
        b"X-Dup: 1",
        b"x-dup: 2",
        b"Content-Length: 4",
    ]
    assert received.body == b"data"


async def test_a_large_request_body_arrives_whole(aiohttp_server: ServerFactory) -> None:
    async def upload(request: web.Request) -> web.Response:
        data = await request.read()
        return web.Response(text=f"{len(data)} {data[:3].decode()} {data[-3:].decode()}")

    app = web.Application(client_max_size=16 * MIB)
    app.router.add_post("/upload", upload)
    server = await aiohttp_server(app)
    body = b"abc" + b"x" * (5 * MIB) + b"xyz"
    async with UpstreamPool(str(server.make_url(""))) as pool:
        _, answered = await get(pool, "/upload", "POST", body)
    assert answered == f"{len(body)} abc xyz".encode()


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        request_head("GET", "/", [("X-A", "1\r\nX-Injected: 1")])
    with pytest.raises(ValueError, match="CR or LF"):
        request_head("GET", "/a\r\nX: 1", [])
    with pytest.raises(ValueError, match="malformed"):
        request_head("GET", "/a b", [])
    with pytest.raises(ValueError, match="malformed"):
        request_head("G T", "/", [])
    assert request_head("GET", "/x?y", [("Host", "h")]) == b"GET /x?y HTTP/1.1\r\nHost: h\r\n\r\n"


# --- stale connections ------------------------------------------------------------------------


def closing_the_second_request_on_each_connection() -> Script:
    """Answers the first request of a connection, closes it on the second without answering."""

    async def script(request: Request) -> bytes | None:
        return answer(b"fresh") if request.index == 0 else None

    return script


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
async def test_idempotent_request_on_a_stale_connection_is_sent_once_more(
    method: str, raw_server: RawServerFactory
) -> None:
    server = await raw_server(closing_the_second_request_on_each_connection())
    async with UpstreamPool(server.url) as pool:
        await get(pool, "/first")
        response, _ = await get(pool, "/again", method)
        assert response.status == 200
        assert pool.stale_resends == 1  # what the proxy's retries metric reads
    assert [(r.line.split()[1], r.connection, r.index) for r in server.requests] == [
        (b"/first", 0, 0),
        (b"/again", 0, 1),
        (b"/again", 1, 0),
    ]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_on_a_stale_connection_is_not_sent_again(
    method: str, raw_server: RawServerFactory
) -> None:
    server = await raw_server(closing_the_second_request_on_each_connection())
    async with UpstreamPool(server.url) as pool:
        await get(pool, "/first")
        with pytest.raises(UpstreamProtocolError, match="not re-sent"):
            await get(pool, "/again", method, b"{}")
        assert pool.connections == 0
    assert [r.line.split()[1] for r in server.requests] == [b"/first", b"/again"]


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(
    raw_server: RawServerFactory,
) -> None:
    async def never(request: Request) -> None:
        return None

    server = await raw_server(never)
    async with UpstreamPool(server.url) as pool:
        with pytest.raises(UpstreamProtocolError, match="without answering"):
            await get(pool)
        assert pool.connections == 0
    assert len(server.requests) == 1


# --- malformed answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", "Invalid status code"),
        (b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", "Expected dot"),
        (b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "version other than"),
        (b"ICY 200 OK\r\n\r\n", "Expected HTTP/"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", "header token"),
        (b"HTTP/1.1 200 OK\r\nX-A : x\r\nContent-Length: 0\r\n\r\n", "header token"),
        (b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n", "Unexpected space"),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", "header value char"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding can't be present with Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "other than chunked"),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "may not use"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
    ],
)
async def test_a_malformed_head_is_a_protocol_error(
    raw: bytes, message: str, raw_server: RawServerFactory
) -> None:
    server = await raw_server(replying(raw))
    async with UpstreamPool(server.url) as pool:
        with pytest.raises(UpstreamProtocolError, match=message) as caught:
            await get(pool)
        assert pool.connections == 0
    assert caught.value.origin == server.url
    # the message names the failure, never what the server sent
    assert str(caught.value).startswith(server.url)
    assert all(part not in str(caught.value) for part in ("Bad Name", "gzip", "0x10", "ICY"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"zz\r\nab\r\n0\r\n\r\n", "chunk size"),
        (b"+2\r\nab\r\n0\r\n\r\n", "chunk size"),
        (b"0x2\r\nab\r\n0\r\n\r\n", "chunk size"),
        (b" 2\r\nab\r\n0\r\n\r\n", "chunk size"),
        (b"2\r\nabc\r\n0\r\n\r\n", "Expected LF after chunk data"),
    ],
)
async def test_a_malformed_chunk_is_a_protocol_error(
    body: bytes, message: str, raw_server: RawServerFactory
) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = await raw_server(replying(head + body))
    async with UpstreamPool(server.url) as pool:
        response = await pool.request("GET", "/", host_headers(pool))
        with pytest.raises(UpstreamProtocolError, match=message):
            await response.read()
        response.release()
        assert pool.connections == 0


async def test_a_connection_dropped_mid_body_is_a_protocol_error(
    raw_server: RawServerFactory,
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        async with UpstreamPool(f"http://127.0.0.1:{port}") as pool:
            response = await pool.request("GET", "/", host_headers(pool))
            assert await response.read(7) == b"partial"
            with pytest.raises(UpstreamProtocolError, match="middle of its answer"):
                await response.read(1)
            response.release()
            assert pool.connections == 0
    finally:
        tcp.close()
        await tcp.wait_closed()


# --- connecting, timeouts, TLS ----------------------------------------------------------------


async def test_connection_refused_is_a_connect_error() -> None:
    async with UpstreamPool(f"http://127.0.0.1:{free_port()}") as pool:
        with pytest.raises(UpstreamConnectError, match="ConnectionRefusedError"):
            await get(pool)
        assert pool.connections == 0


async def test_no_answer_within_the_read_timeout(raw_server: RawServerFactory) -> None:
    async def silent(request: Request) -> bytes:
        await asyncio.sleep(10)
        return answer()

    server = await raw_server(silent)
    async with UpstreamPool(server.url, read_timeout_s=0.2) as pool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UpstreamTimeoutError, match=r"no complete answer head within 0\.2 s"):
            await get(pool)
        assert 0.19 < loop.time() - started < 1.0
        assert pool.connections == 0


async def test_a_body_that_stalls_times_out(aiohttp_server: ServerFactory) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(6):  # data keeps coming, for longer than the timeout in total
            await response.write(b"x" * 10)
            await asyncio.sleep(0.1)
        await asyncio.sleep(5)
        return response

    app = web.Application()
    app.router.add_get("/stall", stall)
    server = await aiohttp_server(app)
    async with UpstreamPool(str(server.make_url("")), read_timeout_s=0.35) as pool:
        response = await pool.request("GET", "/stall", host_headers(pool))
        received: list[bytes] = []

        async def consume() -> None:
            async for chunk in response.content.iter_any():
                received.append(chunk)

        with pytest.raises(UpstreamTimeoutError):
            await consume()
        response.release()
        assert b"".join(received) == b"x" * 60
        assert pool.connections == 0


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_verified_against_the_given_ca(
    aiohttp_server: ServerFactory, test_ca: trustme.CA
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1").configure_cert(server_context)
    app = web.Application()
    app.router.add_get("/tls", secure)
    server = await aiohttp_server(app, ssl=server_context)
    url = str(server.make_url("")).rstrip("/")
    assert url.startswith("https://")

    trusting = ssl.create_default_context()
    test_ca.configure_trust(trusting)
    async with UpstreamPool(url, ssl_context=trusting) as pool:
        response, body = await get(pool, "/tls")
        assert (response.status, body) == (200, b"secure")
        assert (await get(pool, "/tls"))[1] == b"secure"
        assert pool.connections == 1

    async with UpstreamPool(url, ssl_context=ssl.create_default_context()) as pool:
        with pytest.raises(UpstreamConnectError, match="certificate verify failed"):
            await get(pool, "/tls")
        assert pool.connections == 0


async def secure(request: web.Request) -> web.Response:
    return web.Response(text="secure")


# --- streaming, backpressure, cancellation ----------------------------------------------------


async def test_a_large_body_streams_with_bounded_buffering(aiohttp_server: ServerFactory) -> None:
    size = 50 * MIB
    piece = b"r" * (1 * MIB)

    async def report(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(size)})
        await response.prepare(request)
        for _ in range(size // len(piece)):
            await response.write(piece)
        return response

    app = web.Application()
    app.router.add_get("/report", report)
    server = await aiohttp_server(app)
    async with UpstreamPool(str(server.make_url(""))) as pool:
        response = await pool.request("GET", "/report", host_headers(pool))
        received = most_buffered = reads = 0
        async for chunk in response.content.iter_any():
            received += len(chunk)
            reads += 1
            if reads % 8 == 0:  # a slow consumer: the socket fills up meanwhile
                await asyncio.sleep(0.01)
            most_buffered = max(most_buffered, response.buffered)
        response.release()
        assert received == size
        # the socket was paused (the mark was reached), one socket read past it at most
        assert HIGH_WATER < most_buffered <= HIGH_WATER + 256 * 1024
        assert pool.idle_connections == 1


@pytest.mark.parametrize("phase", ["waiting for the head", "mid-body"])
async def test_cancellation_closes_the_connection_and_leaks_nothing(
    phase: str, aiohttp_server: ServerFactory
) -> None:
    upstream_saw_disconnect = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        try:
            if phase == "waiting for the head":
                started.set()
                await asyncio.sleep(30)
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"x" * 1024)
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            upstream_saw_disconnect.set()
            raise
        return response

    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_get("/slow", slow)
    server = await aiohttp_server(app)
    async with UpstreamPool(str(server.make_url(""))) as pool:
        tasks_before = asyncio.all_tasks()

        async def fetch() -> None:
            response = await pool.request("GET", "/slow", host_headers(pool))
            try:
                assert await response.read(1024)
                started.set()
                await response.read(1)
            finally:
                response.release()

        task = asyncio.create_task(fetch())
        await asyncio.wait_for(started.wait(), 3)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.connections == pool.idle_connections == 0
        await asyncio.wait_for(upstream_saw_disconnect.wait(), 3)
        assert asyncio.all_tasks() <= tasks_before | {asyncio.current_task()}


async def test_cancelled_without_release_still_frees_the_slot(
    aiohttp_server: ServerFactory,
) -> None:
    """Cancellation inside a read closes the connection even if the caller never releases."""

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"x")
        await asyncio.sleep(30)
        return response

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = await aiohttp_server(app)
    async with UpstreamPool(str(server.make_url("")), max_connections=1) as pool:
        response = await pool.request("GET", "/slow", host_headers(pool))
        assert await response.read(1) == b"x"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await response.read(1)
        assert pool.connections == 0
        response.release()  # later, and twice: harmless
        response.release()
        assert pool.connections == 0


async def test_release_before_the_body_is_read(raw_server: RawServerFactory) -> None:
    async def script(request: Request) -> bytes:
        if b"/big" in request.line:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100
        return answer(b"small")

    server = await raw_server(script)
    async with UpstreamPool(server.url) as pool:
        # received whole though unread: the connection is reused
        response = await pool.request("GET", "/small", host_headers(pool))
        await asyncio.sleep(0.02)
        response.release()
        assert pool.idle_connections == 1
        # not received whole: the connection is closed
        response = await pool.request("GET", "/big", host_headers(pool))
        response.release()
        assert pool.connections == 0
        assert (await get(pool, "/small"))[1] == b"small"
        assert server.connections == 2


async def test_reading_helpers(raw_server: RawServerFactory) -> None:
    server = await raw_server(replying(answer(b"0123456789")))
    async with UpstreamPool(server.url) as pool:
        response = await pool.request("GET", "/", host_headers(pool))
        assert response.content is response
        assert await response.content.read(3) == b"012"
        assert await response.content.readexactly(4) == b"3456"
        assert not response.content.at_eof()
        with pytest.raises(asyncio.IncompleteReadError) as caught:
            await response.content.readexactly(5)
        assert caught.value.partial == b"789"
        assert response.content.at_eof()
        assert await response.content.read() == b""
        response.release()
        assert pool.idle_connections == 1


async def test_closed_pool_refuses_requests(raw_server: RawServerFactory) -> None:
    server = await raw_server(replying(answer()))
    pool = UpstreamPool(server.url)
    await get(pool)
    await pool.close()
    assert pool.connections == 0
    with pytest.raises(UpstreamConnectError, match="closed"):
        await get(pool)
    await wait_for(lambda: server.open_connections == 0)


def test_only_http_and_https_origins() -> None:
    async def make(url: str) -> None:
        UpstreamPool(url)

    with pytest.raises(ValueError, match="http"):
        asyncio.run(make("ftp://example.com"))


async def test_a_response_dropped_without_release_frees_its_connection(
    raw_server: RawServerFactory,
) -> None:
    server = await raw_server(replying(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    async with UpstreamPool(server.url, max_connections=1) as pool:
        response = await pool.request("GET", "/", host_headers(pool))
        assert await response.read(3) == b"abc"
        del response  # a caller's bug; the slot must not stay taken
        assert pool.connections == 0
        second = await pool.request("GET", "/", host_headers(pool))
        second.release()
        assert server.connections == 2


async def test_waiters_get_the_slots_of_connections_that_fail() -> None:
    async with UpstreamPool(f"http://127.0.0.1:{free_port()}", max_connections=2) as pool:
        results = await asyncio.gather(*(get(pool) for _ in range(6)), return_exceptions=True)
        assert all(isinstance(result, UpstreamConnectError) for result in results)
        assert pool.connections == 0


async def test_http_1_0_answers_are_not_kept_alive(raw_server: RawServerFactory) -> None:
    server = await raw_server(replying(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    async with UpstreamPool(server.url) as pool:
        assert (await get(pool))[1] == b"ok"
        assert pool.connections == 0


async def test_reading_after_release_finds_nothing(raw_server: RawServerFactory) -> None:
    server = await raw_server(replying(answer(b"body")))
    async with UpstreamPool(server.url) as pool:
        response = await pool.request("GET", "/", host_headers(pool))
        response.release()
        assert response.at_eof()
        assert await response.read() == b""
        assert await response.content.read(5) == b""
        assert [chunk async for chunk in response.content.iter_any()] == []


async def test_an_early_answer_stops_a_large_upload(raw_server: RawServerFactory) -> None:
    """A server answering (413, say) before reading the body: the answer comes back at once."""
    answered = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the body is never read
        writer.write(answer(b"too big", "413 Payload Too Large"))
        await writer.drain()
        await asyncio.sleep(2)
        answered.set()
        writer.close()

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        async with UpstreamPool(f"http://127.0.0.1:{port}") as pool:
            body = b"u" * (32 * MIB)
            async with asyncio.timeout(1.5):
                response, text = await get(pool, "/upload", "POST", body)
            assert (response.status, text) == (413, b"too big")
            assert not answered.is_set()
            assert pool.connections == 0  # the unsent rest makes the connection unusable
    finally:
        tcp.close()
        await tcp.wait_closed()


# --- duplicate lengths and limits -------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths",
    [b"Content-Length: 2, 2\r\n", b"Content-Length: 2\r\ncontent-length: 2\r\n"],
    ids=["comma-list", "two fields"],
)
async def test_duplicate_equal_content_lengths_collapse_to_one_field(
    lengths: bytes, raw_server: RawServerFactory
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Before: 1\r\n" + lengths + b"X-After: 2\r\n\r\nok"
    server = await raw_server(replying(raw, answer(b"next")))
    async with UpstreamPool(server.url) as pool:
        response, body = await get(pool)
        assert body == b"ok"
        assert list(response.headers.items()) == [
            ("X-Before", "1"),
            ("Content-Length", "2"),
            ("X-After", "2"),
        ]
        assert (await get(pool))[1] == b"next"  # the connection stays in step
        assert server.connections == 1


@pytest.mark.parametrize(
    "lengths",
    [b"Content-Length: 2, 3\r\n", b"Content-Length: 2\r\nContent-Length: 3\r\n"],
    ids=["comma-list", "two fields"],
)
async def test_unequal_content_lengths_are_a_protocol_error(
    lengths: bytes, raw_server: RawServerFactory
) -> None:
    server = await raw_server(replying(b"HTTP/1.1 200 OK\r\n" + lengths + b"\r\nabc"))
    async with UpstreamPool(server.url) as pool:
        with pytest.raises(UpstreamProtocolError, match="Content-Length"):
            await get(pool)
        assert pool.connections == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-F%d: v\r\n" % n for n in range(MAX_FIELDS + 1))
            + b"Content-Length: 0\r\n\r\n",
            "header fields",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * (70 * 1024) + b"\r\n\r\n",
            "head or chunk framing over 64 KiB",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000,
            "Chunk size overflow",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
            + b"T: "
            + b"t" * (70 * 1024)
            + b"\r\n\r\n",
            "head or chunk framing over 64 KiB",
        ),
    ],
    ids=["too many fields", "head too large", "chunk line too long", "trailers too large"],
)
async def test_heads_over_the_limits_are_a_protocol_error(
    raw: bytes, message: str, raw_server: RawServerFactory
) -> None:
    server = await raw_server(replying(raw))
    async with UpstreamPool(server.url) as pool:
        with pytest.raises(UpstreamProtocolError, match=message):
            await get(pool)
        assert pool.connections == 0


async def test_a_head_of_max_fields_is_accepted(raw_server: RawServerFactory) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % n for n in range(MAX_FIELDS - 1))
    server = await raw_server(
        replying(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n")
    )
    async with UpstreamPool(server.url) as pool:
        response, _ = await get(pool)
        assert len(response.headers) == MAX_FIELDS


async def test_a_value_that_is_not_utf8_survives_byte_for_byte(
    raw_server: RawServerFactory,
) -> None:
    server = await raw_server(
        replying(b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n")
    )
    async with UpstreamPool(server.url) as pool:
        response, _ = await get(pool)
        assert response.headers["X-Name"].encode("utf-8", "surrogateescape") == b"caf\xe9"
