"""The server edge under a hostile client: what it logs, how long it waits, how many connections
it holds, how it answers (one policy for every answer) and how it stops."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config.settings import ListenSettings, LwaSettings, Settings, UpstreamSettings
from proxy.emulator import EmulatorConfig
from proxy.observability.redact import Redactor
from proxy.secret import Secret
from proxy.server.app import create_app
from proxy.server.listener import default_max_connections
from proxy.server.run import LoopErrorReporter, RunningServer, start_server
from tests.conftest import ServerFactory, StartProxy, settings_for, url_of
from tests.support.rawhttp import raw_request
from tests.test_lifecycle import start_proxy_process

CLIENT_KEY = "server-hardening-client-key-0123"
BODY = b'{"ok":true}'
HOST = "127.0.0.1"


class CannedUpstream:
    """A raw HTTP/1.1 upstream answering every request with `answer`; counts what reached it."""

    def __init__(self) -> None:
        self.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n" + BODY
        self.requests: list[bytes] = []
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def canned() -> AsyncIterator[CannedUpstream]:
    upstream = CannedUpstream()
    server = await asyncio.start_server(upstream.serve, HOST, 0)
    upstream.url = f"http://{HOST}:{server.sockets[0].getsockname()[1]}"
    yield upstream
    server.close()
    await server.wait_closed()


def canned_settings(
    canned: CannedUpstream, emulator: TestServer, config: EmulatorConfig, **listen: Any
) -> Settings:
    settings = settings_for(emulator, config, **listen)
    upstream = dataclasses.replace(settings.upstream, endpoint=canned.url)
    return dataclasses.replace(settings, upstream=upstream)


async def raw_exchange(port: int, data: bytes, wait_s: float = 5.0) -> bytes:
    """Everything the proxy sends back on one connection for `data`, until it closes."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        async with asyncio.timeout(wait_s):
            return await reader.read(1 << 20) + await reader.read()
    finally:
        writer.close()


def head_of(answer: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    head = answer.split(b"\r\n\r\n", 1)[0]
    status_line, *lines = head.split(b"\r\n")
    return status_line, [tuple(line.split(b": ", 1)) for line in lines]  # type: ignore[misc]


def warnings_and_worse(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- an unexpected failure: its class and a redacted message, no traceback ---------------------


async def test_an_unexpected_failure_logs_its_class_and_a_redacted_message_without_traceback(
    emulator: TestServer, emulator_config: EmulatorConfig, caplog: pytest.LogCaptureFixture
) -> None:
    secret = emulator_config.client_secret
    broken = [False]

    def clock() -> float:  # the proxy's clock, failing with a secret in its message on demand
        if broken[0]:
            raise RuntimeError(f"clock broke near client_secret {secret}")
        return time.time()

    app = create_app(settings_for(emulator, emulator_config), clock=clock)
    server = await start_server(app, HOST, 0, drain_timeout_s=1.0)
    try:
        broken[0] = True
        caplog.clear()
        answer = await raw_request(HOST, server.port, build(b"GET /orders/v0/orders HTTP/1.1"))
    finally:
        broken[0] = False
        await server.stop()
    assert answer.status == 500
    assert answer.header("x-spapi-proxy-error") == "InternalError"
    assert secret.encode() not in answer.body
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is None
    assert errors[0].exc_text is None
    assert "RuntimeError" in errors[0].getMessage()
    assert "clock broke" in errors[0].getMessage()
    assert secret not in errors[0].getMessage()


def build(request_line: bytes, *fields: bytes, body: bytes = b"", close: bool = True) -> bytes:
    lines = [request_line, b"Host: x", *fields]
    if close:
        lines.append(b"Connection: close")
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# --- a non-UTF-8 client key ------------------------------------------------------------------


async def test_a_non_utf8_client_key_is_401_with_at_most_one_warning(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(emulator, emulator_config, auth_token=Secret(CLIENT_KEY))
    proxy = await start_proxy(settings)
    caplog.clear()
    answer = await raw_request(
        HOST, proxy.port, build(b"GET /orders/v0/orders HTTP/1.1", b"x-spapi-proxy-key: caf\xe9")
    )
    assert answer.status == 401
    assert answer.header("x-spapi-proxy-error") == "ProxyUnauthorized"
    loud = warnings_and_worse(caplog)
    assert len(loud) <= 1
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in loud)


# --- log forging -------------------------------------------------------------------------------

FORGING_PATH = b"/orders/v0/orders%0a2026-01-01%2000:00:00,000%20ERROR%20proxy.app:%20FORGED%1b[31m"


@pytest.mark.parametrize("with_key", [False, True], ids=["401-path", "forwarded"])
async def test_control_characters_from_the_client_are_escaped_in_every_log_line(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
    with_key: bool,
) -> None:
    settings = settings_for(emulator, emulator_config, auth_token=Secret(CLIENT_KEY))
    proxy = await start_proxy(settings)
    caplog.clear()
    fields = [b"x-spapi-proxy-key: " + CLIENT_KEY.encode()] if with_key else []
    await raw_request(HOST, proxy.port, build(b"GET " + FORGING_PATH + b" HTTP/1.1", *fields))
    messages = [r.getMessage() for r in caplog.records]
    access = [m for r, m in zip(caplog.records, messages, strict=True) if r.name == "proxy.access"]
    assert access, "an access line is written"
    assert "FORGED" in access[-1]  # the path is still there, escaped
    for message in messages:
        assert "\n" not in message
        assert "\x1b" not in message
        assert "\r" not in message


# --- draining ----------------------------------------------------------------------------------


async def test_draining_with_a_request_stuck_on_a_silent_upstream_exits_0_within_the_timeout(
    aiohttp_server: ServerFactory, emulator: TestServer, tmp_path: Path
) -> None:
    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response()

    app = web.Application()
    app.router.add_get("/silent", silent)
    upstream = await aiohttp_server(app)
    drain_s = 2.0
    process, port = await start_proxy_process(tmp_path, emulator, url_of(upstream), drain_s)
    _reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(build(b"GET /silent HTTP/1.1"))
    await writer.drain()
    await asyncio.sleep(0.5)  # the request is upstream by now
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=4 * drain_s)
    took = time.monotonic() - started
    writer.close()
    assert process.returncode == 0, output.decode()
    assert took < drain_s + 1.0, f"draining took {took:.1f} s"
    assert b"Traceback" not in output


# --- inbound timeouts --------------------------------------------------------------------------


@pytest.fixture
async def short_timeouts(
    canned: CannedUpstream,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> RunningServer:
    return await start_proxy(
        canned_settings(
            canned,
            emulator,
            emulator_config,
            header_timeout_s=1.0,
            keepalive_timeout_s=1.0,
            body_timeout_s=1.0,
        )
    )


async def closed_within(
    reader: asyncio.StreamReader, seconds: float, trickle: Callable[[], None] | None = None
) -> float:
    """Seconds until the proxy closes the connection (reading and discarding what it sends)."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while True:
            if trickle is not None:
                trickle()
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                continue
            if not data:
                return time.monotonic() - started


async def test_a_connection_that_sends_nothing_is_closed_after_header_timeout(
    short_timeouts: RunningServer,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, short_timeouts.port)
    try:
        took = await closed_within(reader, 5.0)
    finally:
        writer.close()
    assert took >= 0.8


async def test_half_a_head_is_closed_after_header_timeout(short_timeouts: RunningServer) -> None:
    reader, writer = await asyncio.open_connection(HOST, short_timeouts.port)
    try:
        writer.write(b"GET /orders/v0/orders HTTP/1.1\r\nHost: x\r\n")
        await closed_within(reader, 5.0)
    finally:
        writer.close()


async def test_a_head_trickled_a_byte_at_a_time_is_closed_at_header_timeout(
    short_timeouts: RunningServer,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, short_timeouts.port)
    head = iter(b"GET /orders/v0/orders HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000)
    try:
        took = await closed_within(reader, 5.0, lambda: writer.write(bytes([next(head)])))
    finally:
        writer.close()
    assert took < 3.0


async def test_a_body_that_never_comes_is_closed_after_body_timeout(
    short_timeouts: RunningServer, canned: CannedUpstream
) -> None:
    reader, writer = await asyncio.open_connection(HOST, short_timeouts.port)
    try:
        writer.write(b"POST /orders/v0/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
        await closed_within(reader, 5.0)
    finally:
        writer.close()
    assert canned.requests == []


async def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout(
    short_timeouts: RunningServer,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, short_timeouts.port)
    try:
        for pause in (0.3, 0.0):  # a short pause keeps the connection
            await asyncio.sleep(pause)
            writer.write(b"GET /orders/v0/orders HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                await reader.readuntil(BODY)
        took = await closed_within(reader, 5.0)
    finally:
        writer.close()
    assert took >= 0.8


async def test_connections_over_max_connections_are_closed_at_accept_without_a_log_line(
    canned: CannedUpstream,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = await start_proxy(canned_settings(canned, emulator, emulator_config, max_connections=4))
    held = [await asyncio.open_connection(HOST, proxy.port) for _ in range(4)]
    try:
        await asyncio.sleep(0.2)
        caplog.clear()
        refused = [await asyncio.open_connection(HOST, proxy.port) for _ in range(20)]
        for reader, writer in refused:
            async with asyncio.timeout(2):
                assert await reader.read() == b""
            writer.close()
        assert warnings_and_worse(caplog) == []
        held.pop()[1].close()
        await asyncio.sleep(0.3)
        answer = await raw_request(HOST, proxy.port, build(b"GET /orders/v0/orders HTTP/1.1"))
        assert answer.status == 200
    finally:
        for _, writer in held:
            writer.close()


async def open_silent_sockets(port: int, count: int) -> list[asyncio.StreamWriter]:
    """Up to `count` connections that send nothing; those the proxy never accepts are dropped."""

    async def connect() -> asyncio.StreamWriter | None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2.0)
        except (TimeoutError, OSError):
            return None
        return writer

    opened = await asyncio.gather(*(connect() for _ in range(count)))
    return [writer for writer in opened if writer is not None]


async def test_a_flood_of_silent_connections_under_a_low_descriptor_limit_does_not_stop_service(
    canned: CannedUpstream, emulator: TestServer, tmp_path: Path
) -> None:
    process, port = await start_proxy_process(
        tmp_path,
        emulator,
        canned.url,
        drain_s=1,
        listen=", header_timeout_s: 1",
        nofile=256,
        upstream_extra=", max_connections: 20",
    )
    try:
        silent = await open_silent_sockets(port, 300)
        await asyncio.sleep(2.0)  # the silent ones time out and free their descriptors
        answer = await raw_request(HOST, port, build(b"GET /orders/v0/orders HTTP/1.1"))
        assert answer.status == 200
        for writer in silent:
            writer.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=15)
    text = output.decode(errors="replace")
    assert "out of system resource" not in text
    assert "Traceback" not in text
    assert process.returncode == 0, text


async def test_running_out_of_descriptors_is_logged_at_most_once_a_second(
    canned: CannedUpstream, emulator: TestServer, tmp_path: Path
) -> None:
    process, port = await start_proxy_process(
        tmp_path,
        emulator,
        canned.url,
        drain_s=1,
        listen=", header_timeout_s: 60, max_connections: 10000",
        nofile=128,
    )
    started = time.monotonic()
    try:
        silent = await open_silent_sockets(port, 300)
        await asyncio.sleep(1.5)
        for writer in silent:
            writer.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=15)
    took = time.monotonic() - started
    text = output.decode(errors="replace")
    lines = [line for line in text.splitlines() if "cannot accept" in line]
    assert 1 <= len(lines) <= took + 1, text[-3000:]
    assert "Traceback" not in text
    assert "out of system resource" not in text  # asyncio's own report, with its traceback
    assert "listen.max_connections is 10000" in text  # said once at start-up


# --- one policy for every answer -----------------------------------------------------------------

STRANGE = b"X-Strange: caf\xe9"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 11\r\n\r\n" + BODY,
        b"Transfer-Encoding: chunked\r\n\r\nb\r\n" + BODY + b"\r\n0\r\n\r\n",
    ],
    ids=["small", "streamed"],
)
async def test_every_answer_carries_the_upstreams_headers_byte_for_byte_and_adds_only_date(
    canned: CannedUpstream,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    framing: bytes,
) -> None:
    proxy = await start_proxy(canned_settings(canned, emulator, emulator_config))
    canned.answer = b"HTTP/1.1 200 OK\r\n" + STRANGE + b"\r\nx-amzn-RequestId: r1\r\n" + framing
    answer = await raw_exchange(proxy.port, build(b"GET /orders/v0/orders HTTP/1.1"))
    status_line, fields = head_of(answer)
    assert status_line == b"HTTP/1.1 200 OK"
    names = [name.lower() for name, _ in fields]
    assert (b"X-Strange", b"caf\xe9") in fields
    assert (b"x-amzn-RequestId", b"r1") in fields
    assert b"content-type" not in names
    assert b"server" not in names
    assert names.count(b"date") == 1
    assert answer.endswith(BODY) or answer.endswith(b"0\r\n\r\n")


# --- protocol corners ----------------------------------------------------------------------------


@pytest.fixture
async def corner_proxy(
    canned: CannedUpstream,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> RunningServer:
    return await start_proxy(canned_settings(canned, emulator, emulator_config))


async def test_the_status_line_is_http_1_1_whatever_version_the_client_claims(
    corner_proxy: RunningServer,
) -> None:
    answer = await raw_exchange(corner_proxy.port, build(b"GET /orders/v0/orders HTTP/2.0"))
    assert answer.startswith(b"HTTP/1.1 ")
    answer = await raw_exchange(corner_proxy.port, build(b"GET /_proxy/health HTTP/1.0"))
    assert answer.startswith(b"HTTP/1.0 200 ")


async def test_a_request_line_without_a_version_is_400_and_not_forwarded(
    corner_proxy: RunningServer, canned: CannedUpstream
) -> None:
    answer = await raw_exchange(corner_proxy.port, b"GET /orders/v0/orders\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert canned.requests == []


async def test_a_fragment_in_the_target_is_400_and_not_forwarded(
    corner_proxy: RunningServer, canned: CannedUpstream
) -> None:
    answer = await raw_exchange(
        corner_proxy.port, build(b"GET /orders/v0/orders?a=1#fragment HTTP/1.1")
    )
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"InvalidInput" in answer
    assert canned.requests == []


@pytest.mark.parametrize(
    "target", [b"http://x/_proxy/metrics", b"http://x/_proxy/health", b"http://x/orders/v0/orders"]
)
async def test_an_absolute_form_target_is_400_on_every_path(
    corner_proxy: RunningServer, canned: CannedUpstream, target: bytes
) -> None:
    answer = await raw_exchange(corner_proxy.port, build(b"GET " + target + b" HTTP/1.1"))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"InvalidInput" in answer
    assert canned.requests == []


async def test_a_streamed_answer_to_an_http_1_0_client_ends_with_the_connection(
    corner_proxy: RunningServer, canned: CannedUpstream
) -> None:
    canned.answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n" + BODY + b"\r\n0\r\n\r\n"
    )
    answer = await raw_exchange(
        corner_proxy.port, b"GET /orders/v0/orders HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    )
    status_line, fields = head_of(answer)
    assert status_line == b"HTTP/1.0 200 OK"
    names = [name.lower() for name, _ in fields]
    assert b"transfer-encoding" not in names  # HTTP/1.0 has no chunks
    assert b"connection" not in names  # and it closes, which 1.0 assumes
    assert answer.endswith(b"\r\n\r\n" + BODY)


async def test_a_head_answer_keeps_the_upstreams_length_and_sends_no_body(
    corner_proxy: RunningServer, canned: CannedUpstream
) -> None:
    canned.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    reader, writer = await asyncio.open_connection(HOST, corner_proxy.port)
    try:
        for _ in range(2):  # the connection stays usable: no stray body bytes
            writer.write(b"HEAD /orders/v0/orders HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Content-Length: 1234\r\n" in head
    finally:
        writer.close()


def test_the_default_connection_limit_leaves_descriptors_for_upstream_and_files() -> None:
    settings = Settings(
        listen=ListenSettings(),
        upstream=UpstreamSettings(max_connections=100),
        lwa=LwaSettings("id", Secret("s" * 10), Secret("r" * 10)),
    )
    assert default_max_connections(settings, descriptors=1024) == 1024 - 100 - 64
    assert default_max_connections(settings, descriptors=100) == 16  # a floor, to serve at all
    assert default_max_connections(settings, descriptors=1 << 20) == 10_000


async def test_a_client_that_stops_reading_a_streamed_answer_is_cut_after_body_timeout(
    short_timeouts: RunningServer, canned: CannedUpstream
) -> None:
    size = 32 * 1024 * 1024  # far more than the socket buffers between us hold
    canned.answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    reader, writer = await asyncio.open_connection(HOST, short_timeouts.port, limit=1 << 16)
    try:
        writer.write(build(b"GET /orders/v0/orders HTTP/1.1"))
        await asyncio.sleep(2.0)  # reading nothing: the proxy's writes stall at once
        received = 0
        async with asyncio.timeout(10):
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
    finally:
        writer.close()
    assert received < size  # the proxy gave up on the stalled reader and closed


async def test_an_event_loop_error_is_logged_as_class_and_redacted_message_without_traceback(
    emulator_config: EmulatorConfig, caplog: pytest.LogCaptureFixture
) -> None:
    secret = emulator_config.client_secret
    redactor = Redactor()
    redactor.add(secret, configured=True)
    loop = asyncio.get_running_loop()
    try:
        raise RuntimeError(f"a callback broke near {secret}")
    except RuntimeError as error:
        failure = error
    caplog.clear()
    LoopErrorReporter(redactor.scrub)(
        loop, {"message": "Exception in callback something()", "exception": failure}
    )
    loud = warnings_and_worse(caplog)
    assert len(loud) == 1
    assert loud[0].exc_info is None
    assert "RuntimeError" in loud[0].getMessage()
    assert secret not in loud[0].getMessage()


async def test_a_failure_aiohttp_reports_outside_the_front_door_is_one_redacted_line(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    _, writer = await asyncio.open_connection(HOST, proxy.port)
    try:
        await asyncio.sleep(0.1)
        (connection,) = proxy.server.watchdog.connections
        secret = emulator_config.client_secret
        try:
            raise ValueError(f"writing broke near {secret}")
        except ValueError as error:
            failure = error
        caplog.clear()
        connection.log_exception("Unhandled exception", exc_info=failure)  # as aiohttp calls it
    finally:
        writer.close()
    loud = warnings_and_worse(caplog)
    assert len(loud) == 1
    assert loud[0].exc_info is None
    assert "ValueError" in loud[0].getMessage()
    assert secret not in loud[0].getMessage()
