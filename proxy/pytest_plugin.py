"""A pytest plugin (registered through the ``pytest11`` entry point): the offline emulator and
the proxy in front of it, as fixtures any test suite can use without knowing aiohttp.

- ``spapi_emulator``: a running emulator (LWA + STS + SP-API sandbox, stateful Reports and
  Feeds), its URLs, the demo credentials it accepts and the calls it received.
- ``spapi_proxy``: the proxy in front of that emulator, signing with its STS; ``url`` is
  where the code under test sends its SP-API calls (no token, no signature needed).
- ``spapi_emulator_config``: override it to change the emulator (delays, GZIP, throttle).

Each server runs on its own event loop in a background thread, so the tests themselves stay
synchronous (``requests``, an SDK) or run on any loop of their own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from proxy.demo import DEMO_ROLE_ARN, HOST, demo_settings, serving_emulator
from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.server.app import create_app
from proxy.server.run import start_server

START_TIMEOUT_S = 30.0
CALLS_PATH = "/_emulator/calls"


@dataclass(frozen=True)
class SpapiEmulator:
    """A running emulator: where it listens and what it accepts (demo values, not secrets)."""

    url: str
    config: EmulatorConfig
    role_arn: str = DEMO_ROLE_ARN

    @property
    def lwa_token_url(self) -> str:
        return f"{self.url}/auth/o2/token"

    @property
    def sts_url(self) -> str:
        return f"{self.url}/"

    def calls(self) -> list[dict[str, Any]]:
        """The SP-API calls received, oldest first (``GET /_emulator/calls``)."""
        with urllib.request.urlopen(self.url + CALLS_PATH, timeout=10) as response:  # noqa: S310  (our own http:// URL)
            calls: list[dict[str, Any]] = json.load(response)
            return calls

    def clear_calls(self) -> None:
        request = urllib.request.Request(self.url + CALLS_PATH, method="DELETE")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass


@dataclass(frozen=True)
class SpapiProxy:
    """The proxy in front of ``emulator``: send SP-API calls to ``url``."""

    url: str
    emulator: SpapiEmulator


class BackgroundServer:
    """Serves what ``serve`` yields (a URL) on an event loop in a daemon thread until stopped."""

    def __init__(self, serve: Callable[[], AbstractAsyncContextManager[str]]) -> None:
        self._serve = serve
        self._ready = threading.Event()
        self._url = ""
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="spapi-test-server", daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the server did not start within {START_TIMEOUT_S:.0f} s")
        if self._error is not None:
            raise RuntimeError(f"the server could not start: {self._error}") from self._error
        return self._url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to start(); a thread has no one else to tell
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._serve() as url:
            self._url = url
            self._ready.set()
            await self._stop.wait()


def emulator_server(config: EmulatorConfig) -> Callable[[], AbstractAsyncContextManager[str]]:
    @asynccontextmanager
    async def serve() -> AsyncIterator[str]:
        async with serving_emulator(create_emulator_app(config)) as port:
            yield f"http://{HOST}:{port}"

    return serve


def proxy_server(emulator: SpapiEmulator) -> Callable[[], AbstractAsyncContextManager[str]]:
    @asynccontextmanager
    async def serve() -> AsyncIterator[str]:
        settings = demo_settings(emulator.url, emulator.config, port=0, host=HOST)
        # The app registers the settings' secrets (the emulator's) with its redactor itself.
        running = await start_server(create_app(settings), HOST, 0, 1.0)
        try:
            yield f"http://{HOST}:{running.port}"
        finally:
            await running.stop()

    return serve


@pytest.fixture
def spapi_emulator_config() -> EmulatorConfig:
    """Reports and feeds are DONE at once; override this fixture for another configuration."""
    return replace(EmulatorConfig(), queued_s=0.0, in_progress_s=0.0)


@pytest.fixture
def spapi_emulator(spapi_emulator_config: EmulatorConfig) -> Iterator[SpapiEmulator]:
    server = BackgroundServer(emulator_server(spapi_emulator_config))
    url = server.start()
    try:
        yield SpapiEmulator(url, spapi_emulator_config)
    finally:
        server.stop()


@pytest.fixture
def spapi_proxy(spapi_emulator: SpapiEmulator) -> Iterator[SpapiProxy]:
    server = BackgroundServer(proxy_server(spapi_emulator))
    url = server.start()
    try:
        yield SpapiProxy(url, spapi_emulator)
    finally:
        server.stop()
