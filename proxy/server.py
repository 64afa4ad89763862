"""Serving the proxy app: the listener, HTTP-level limits, SP-API-shaped parser errors, draining.

The CLI and the tests start the proxy through `start_server`, so tests exercise the same
listener users run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from proxy.app import FRONT_DOOR

logger = logging.getLogger(__name__)

# aiohttp's own limits, stated here so they are ours: a request line or header line of at most
# 8 KiB and at most 100 headers. Past them aiohttp's parser refuses the request.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 100

# What a client sees when aiohttp's parser refuses its request before the app runs.
PARSER_ERRORS = {
    400: ("InvalidInput", "The request is not valid HTTP/1.1 and was not forwarded."),
    413: ("RequestTooLarge", "The request is too large and was not forwarded."),
    431: ("RequestHeaderFieldsTooLarge", "The request's headers are too large or too many."),
}


class ShapedErrorsRequestHandler(RequestHandler):
    """aiohttp's protocol handler, answering parser-level failures in SP-API's error shape.

    aiohttp writes these as text/plain and logs them at ERROR with a traceback whose text may
    quote the offending bytes; here the log line names the error class only.
    """

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # the answer has begun: only closing is left
            raise ConnectionError("Response already started; closing the connection")
        code, text = PARSER_ERRORS.get(
            status, ("InternalError", "The proxy failed unexpectedly; its log has details.")
        )
        reason = type(exc).__name__ if exc else "unknown"
        logger.warning("refused a request the HTTP parser rejected (%d, %s)", status, reason)
        body = {"errors": [{"code": code, "message": text, "details": reason}]}
        response = web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers={"x-spapi-proxy-error": code},
        )
        response.force_close()
        return response


class ProxyWebServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ShapedErrorsRequestHandler(self, loop=self._loop, **self._kwargs)


class ProxyRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        # aiohttp builds a plain Server; rebuild it with the same parts and our handler class,
        # and with the app's front door, if it has one, in place of the app's router.
        plain = await super()._make_server()
        front_door = self.app.get(FRONT_DOOR)
        return ProxyWebServer(
            front_door if front_door is not None else plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )


@dataclass
class RunningServer:
    runner: ProxyRunner
    port: int

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then close everything."""
        await self.runner.cleanup()


async def start_server(
    app: web.Application,
    host: str,
    port: int,
    drain_timeout_s: float = 10.0,
    reuse_port: bool = False,
) -> RunningServer:
    options: dict[str, Any] = {
        "max_line_size": MAX_LINE_BYTES,
        "max_field_size": MAX_FIELD_BYTES,
        "max_headers": MAX_HEADERS,
    }
    runner = ProxyRunner(
        app,
        access_log=None,  # the proxy writes its own access line
        # A client that disconnects cancels its handler, which closes the upstream request.
        handler_cancellation=True,
        shutdown_timeout=drain_timeout_s,
        **options,
    )
    await runner.setup()
    # reuse_port: several worker processes bind the same port and the kernel spreads connections.
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()  # the app's cleanup closes its upstream connection pool
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return RunningServer(runner, int(bound))


# The objects built at start-up (routes, settings, the operations table, imported modules) live
# as long as the process; without a freeze every full collection walks them again, which stalled
# the event loop ~16 ms at a time under load (the p99 tail of issue 6). A larger first-generation
# threshold makes collections rarer; each request allocates little that survives.
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
