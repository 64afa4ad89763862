"""The listener: start-up failures leave nothing behind."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from proxy.server import start_server


async def test_start_server_cleans_up_when_the_port_is_taken() -> None:
    closed: list[bool] = []

    async def context(app: web.Application) -> AsyncIterator[None]:
        yield
        closed.append(True)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        app = web.Application()
        app.cleanup_ctx.append(context)
        with pytest.raises(OSError, match="address already in use"):
            await start_server(app, "127.0.0.1", busy.getsockname()[1])
    assert closed == [True]
