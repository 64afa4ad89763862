"""The listener: start-up failures leave nothing behind."""

from __future__ import annotations

import socket

import pytest
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig
from proxy.server.app import create_app
from proxy.server.run import start_server
from tests.conftest import settings_for


async def test_start_server_closes_the_app_when_the_port_is_taken(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    app = create_app(settings_for(emulator, emulator_config))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError, match="address already in use"):
            await start_server(app, "127.0.0.1", busy.getsockname()[1])
    assert not app.is_running  # its profiles' pools and sessions were closed
