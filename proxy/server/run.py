"""Serving the proxy: the app's lifetime, the listener on aiohttp's low-level server, draining.

The CLI and the tests start the proxy through `start_server`, so tests exercise the same
listener users run. Everything here is aiohttp's documented API: `web.Server` (our subclass in
proxy.server.listener), `web.ServerRunner` and `web.TCPSite`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy.observability.logging_setup import failure_frames, failure_summary, loggable
from proxy.server.app import ProxyApp
from proxy.server.front_door import FrontDoor
from proxy.server.listener import (
    MAX_FIELD_BYTES,
    MAX_HEADERS,
    MAX_LINE_BYTES,
    ProxyServer,
    Scrub,
    limits_from,
)

logger = logging.getLogger(__name__)


# Once everything in flight is cancelled, what is left to close takes moments.
CLOSING_S = 1.0
ACCEPT_ERROR_EVERY_S = 1.0


@dataclass
class RunningServer:
    runner: web.ServerRunner
    server: ProxyServer
    app_lifetime: AsyncExitStack
    port: int
    drain_timeout_s: float

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish within drain_timeout_s, cut the rest,
        then close everything the app holds."""
        try:
            for site in list(self.runner.sites):
                await site.stop()
            await self.server.watchdog.drain(self.drain_timeout_s)
            await self.server.watchdog.stop()
            await self.runner.cleanup()
        finally:
            await self.app_lifetime.aclose()


async def start_server(
    app: ProxyApp,
    host: str,
    port: int,
    drain_timeout_s: float = 10.0,
    reuse_port: bool = False,
) -> RunningServer:
    lifetime = AsyncExitStack()
    await lifetime.enter_async_context(app.running())
    limits = limits_from(app.settings)
    try:
        server = ProxyServer(
            FrontDoor(app),
            limits,
            app.redactor.scrub,
            access_log=None,  # the proxy writes its own access line
            keepalive_timeout=limits.keepalive_timeout_s,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS,
        )
        runner = web.ServerRunner(server, shutdown_timeout=CLOSING_S)
        await runner.setup()
        # reuse_port: several worker processes bind the same port and the kernel spreads
        # connections.
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
    except BaseException:
        await lifetime.aclose()  # the app's upstream connection pools and sessions
        raise
    install_loop_error_reporter(asyncio.get_running_loop(), app.redactor.scrub)
    server.watchdog.start()
    connections = server.watchdog.connections
    app.metrics.inbound_connections = lambda: len(connections)
    bound = runner.addresses[0][1] if runner.addresses else port
    return RunningServer(runner, server, lifetime, int(bound), drain_timeout_s)


def install_loop_error_reporter(loop: asyncio.AbstractEventLoop, scrub: Scrub) -> None:
    """Make LoopErrorReporter the loop's exception handler, once per loop (it stays for the
    loop's life)."""
    if not isinstance(loop.get_exception_handler(), LoopErrorReporter):
        loop.set_exception_handler(LoopErrorReporter(scrub))


class LoopErrorReporter:
    """The event loop's exception handler: what asyncio reports (a callback or task that failed,
    an accept that failed) as one line, the exception as its class, where it was raised and its
    message through `scrub`, never a traceback (proxy.observability.logging_setup's
    failure_summary).

    "Out of system resource" on accept gets at most one line a second: asyncio reports each
    failed accept (EMFILE: no descriptor left) and retries a second later, once per pending
    connection, which under a flood would be thousands of lines a second.
    """

    def __init__(self, scrub: Scrub) -> None:
        self._scrub = scrub
        self._last_reported = -ACCEPT_ERROR_EVERY_S
        self._suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_retry_for_a_closed_listener(context):
            # asyncio's accept retry scheduled before the listener closed: nothing is wrong.
            logger.debug("an accept retry found its listener closed")
            return
        message = str(context.get("message", "unknown"))
        error = context.get("exception")
        if "accept" in message:
            self._report_accept_error(error)
        elif isinstance(error, BaseException):
            logger.error("%s: %s", loggable(message), failure_summary(error, self._scrub))
            logger.debug("raised through:\n%s", failure_frames(error))
        else:
            logger.error("%s", loggable(self._scrub(message)))

    def _report_accept_error(self, error: object) -> None:
        now = time.monotonic()
        if now - self._last_reported < ACCEPT_ERROR_EVERY_S:
            self._suppressed += 1
            return
        logger.warning(
            "cannot accept connections: %s (%d more like it not logged); lower "
            "listen.max_connections or raise the descriptor limit (ulimit -n)",
            error.strerror if isinstance(error, OSError) else "out of system resource",
            self._suppressed,
        )
        self._last_reported, self._suppressed = now, 0


def is_retry_for_a_closed_listener(context: dict[str, Any]) -> bool:
    """asyncio retries a failed accept a second later with a callback of its own; when the
    listener closed meanwhile, that callback fails on the closed socket's descriptor (-1)."""
    return isinstance(context.get("exception"), ValueError) and "_start_serving" in str(
        context.get("handle", "")
    )


# The objects built at start-up (settings, the operations table, imported modules) live as long
# as the process; without a freeze every full collection walks them again, which stalls the
# event loop ~16 ms at a time under load. A larger first-generation threshold makes collections
# rarer; each request allocates little that survives.
GC_THRESHOLDS = (20_000, 20, 100)


def settle_garbage_collector() -> None:
    """Move everything alive now out of the collector's way; call once the server is up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve_until_signalled(server: RunningServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    await stop.wait()
    logger.info("stopping: draining in-flight requests")
    await server.stop()
