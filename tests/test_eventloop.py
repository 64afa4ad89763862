"""The serving event loop's selector: events at once, timeouts kept, spinning bounded."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from proxy.server.eventloop import SpinningSelector, new_event_loop, run

SPIN_S = 0.002


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, SpinningSelector]]:
    reader, writer = socket.socketpair()
    selector = SpinningSelector(SPIN_S)
    selector.register(reader, selectors.EVENT_READ)
    yield reader, writer, selector
    selector.close()
    reader.close()
    writer.close()


def test_ready_events_come_back_at_once(
    pair: tuple[socket.socket, socket.socket, SpinningSelector],
) -> None:
    reader, writer, selector = pair
    writer.send(b"x")
    started = time.perf_counter()
    ready = selector.select(timeout=5)
    assert [key.fileobj for key, _ in ready] == [reader]
    assert time.perf_counter() - started < 1


def test_a_timeout_is_kept_whether_shorter_or_longer_than_the_spin(
    pair: tuple[socket.socket, socket.socket, SpinningSelector],
) -> None:
    _, _, selector = pair
    for timeout in (SPIN_S / 4, SPIN_S * 20):
        started = time.perf_counter()
        assert selector.select(timeout=timeout) == []
        elapsed = time.perf_counter() - started
        assert timeout * 0.9 <= elapsed < timeout + 0.5
    started = time.perf_counter()
    assert selector.select(timeout=0) == []
    assert time.perf_counter() - started < SPIN_S  # no spin when asked not to wait


def test_an_event_after_the_spin_wakes_the_blocking_select(
    pair: tuple[socket.socket, socket.socket, SpinningSelector],
) -> None:
    reader, writer, selector = pair
    sender = threading.Timer(SPIN_S * 25, writer.send, args=(b"x",))
    sender.start()
    started = time.perf_counter()
    ready = selector.select(timeout=10)
    sender.join()
    assert [key.fileobj for key, _ in ready] == [reader]
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("busy_poll_us", [0, 50])
def test_the_loop_serves_real_connections(busy_poll_us: int) -> None:
    loop = new_event_loop(busy_poll_us)
    spinning = isinstance(getattr(loop, "_selector", None), SpinningSelector)
    loop.close()
    assert spinning is (busy_poll_us > 0)

    async def echo_once() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.01)  # an idle gap longer than the spin
        writer.write(b"hello")
        answer = await reader.readexactly(5)
        writer.close()
        server.close()
        await server.wait_closed()
        return answer

    assert run(echo_once(), busy_poll_us) == b"hello"
