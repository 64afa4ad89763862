"""Inbound connections: how many may be open, how long each may take, and how parser-level
failures are answered.

aiohttp's documented low-level server (`web.Server`) accepts and parses; `ProxyServer` gives it
our connection class, `ProxyConnection`, and one watchdog that sweeps every connection about
once a second (the pattern the upstream pool uses): nothing is scheduled per request. Each
connection notes only what the sweep needs: whether a request is in progress, when it last fell
idle, when the next head began arriving, and a count of reads.

- A request head must be complete within `header_timeout_s` of the connection opening, or of its
  first byte on a kept-alive connection (a client trickling a byte at a time gains nothing).
- An idle kept-alive connection closes after `keepalive_timeout_s`.
- A client may stall a request in progress for at most `body_timeout_s`: its body stops
  arriving, or it stops reading the answer (the bytes waiting to be sent don't move).
- Beyond `max_connections` open at once, a new connection is closed as soon as it is accepted,
  without a log line: a flood must not become a log flood, nor run the process out of
  descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from proxy.config.settings import Settings
from proxy.observability.logging_setup import failure_frames, failure_summary
from proxy.observability.request_ids import new_request_id
from proxy.server.answers import error_answer

logger = logging.getLogger(__name__)

Scrub = Callable[[str], str]

# aiohttp's own limits, stated here so they are ours: a request line or header line of at most
# 8 KiB and at most 100 headers. Past them aiohttp's parser refuses the request.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 100

# What a client sees when aiohttp's parser refuses its request before the front door runs.
PARSER_ERRORS = {
    400: ("InvalidInput", "The request is not valid HTTP/1.1 and was not forwarded."),
    413: ("RequestTooLarge", "The request is too large and was not forwarded."),
    431: ("RequestHeaderFieldsTooLarge", "The request's headers are too large or too many."),
}

SWEEP_INTERVAL_S = 1.0
# Descriptors kept free beside inbound and upstream connections: log and config files, LWA and
# STS sessions, the listening sockets, the event loop's own.
RESERVED_DESCRIPTORS = 64
MIN_CONNECTIONS = 16
MAX_DEFAULT_CONNECTIONS = 10_000


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    keepalive_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @property
    def sweep_interval_s(self) -> float:
        # Short timeouts (tests) are swept often enough to be kept within a quarter of them.
        shortest = min(self.header_timeout_s, self.keepalive_timeout_s, self.body_timeout_s)
        return min(SWEEP_INTERVAL_S, shortest / 4)


def limits_from(settings: Settings) -> ConnectionLimits:
    listen = settings.listen
    fitting = default_max_connections(settings)
    max_connections = listen.max_connections or fitting
    if max_connections > fitting:
        logger.warning(
            "listen.max_connections is %d, but the descriptor limit (ulimit -n) leaves room for "
            "%d beside upstream connections; a flood may run the process out of descriptors",
            max_connections,
            fitting,
        )
    return ConnectionLimits(
        listen.header_timeout_s,
        listen.keepalive_timeout_s,
        listen.body_timeout_s,
        max_connections,
    )


def default_max_connections(settings: Settings, descriptors: int | None = None) -> int:
    """What the descriptor limit leaves once upstream connections and a reserve are counted."""
    if descriptors is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        descriptors = MAX_DEFAULT_CONNECTIONS * 2 if soft == resource.RLIM_INFINITY else soft
    upstream = sum(p.upstream.max_connections for p in settings.all_profiles.values())
    spare = descriptors - upstream - RESERVED_DESCRIPTORS
    return max(MIN_CONNECTIONS, min(MAX_DEFAULT_CONNECTIONS, spare))


class ProxyConnection(web.RequestHandler):
    """aiohttp's protocol handler for one inbound connection, with what the watchdog needs and
    parser-level failures answered in SP-API's error shape.

    aiohttp answers parser failures as text/plain and logs them at ERROR with a traceback whose
    text may quote the offending bytes; `handle_error` is the one hook it offers for that.
    """

    __slots__ = (
        "_refused",
        "busy",
        "first_byte_at",
        "heard_at",
        "idle_since",
        "progress_seen",
        "reads",
        "request",
        "served",
        "watchdog",
    )

    def __init__(self, manager: ProxyServer, watchdog: Watchdog, **options: Any) -> None:
        super().__init__(manager, **options)
        self.watchdog = watchdog
        self.busy = False
        self.request: web.BaseRequest | None = None
        self.served = 0  # requests begun on this connection
        self.idle_since = 0.0  # when the wait for the next head began
        self.first_byte_at: float | None = None  # when that head's first byte arrived
        self.reads = 0  # data_received calls: the stall check compares counts
        self.progress_seen = (-1, -1)  # reads and unsent bytes when the last sweep saw a change
        self.heard_at = 0.0  # when that sweep ran
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.watchdog.admit(self):
            self._refused = True
            cast(asyncio.Transport, transport).abort()  # at once, unlogged: see the docstring
            return
        self.idle_since = self.watchdog.clock()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self.watchdog.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        if self.first_byte_at is None and not self.busy:
            self.first_byte_at = self.watchdog.clock()
        super().data_received(data)

    def request_began(self, request: web.BaseRequest) -> None:
        self.busy = True
        self.request = request
        self.served += 1
        self.watchdog.busy += 1

    def request_ended(self) -> None:
        if not self.busy:
            return
        self.busy = False
        self.request = None
        self.idle_since = self.watchdog.clock()
        self.first_byte_at = None
        self.watchdog.request_ended()

    def overdue(self, limits: ConnectionLimits, now: float) -> bool:
        """Past its time: a head not complete, an idle keep-alive, or a client that stalls a
        request in progress (its body stops arriving, or it stops reading the answer)."""
        if self.busy:
            return self._stalled(limits.body_timeout_s, now)
        if self.served == 0:  # the first head is due within header_timeout_s of connecting
            return now - self.idle_since > limits.header_timeout_s
        if self.first_byte_at is None:
            return now - self.idle_since > limits.keepalive_timeout_s
        return now - self.first_byte_at > limits.header_timeout_s

    def _stalled(self, timeout_s: float, now: float) -> bool:
        request, transport = self.request, self.transport
        unsent = transport.get_write_buffer_size() if transport is not None else 0
        waiting_on_client = unsent > 0 or (request is not None and not request.content.is_eof())
        progress = (self.reads, unsent)
        if progress != self.progress_seen or not waiting_on_client:
            # Moving, or waiting on the upstream (whose own timeouts apply): not stalled.
            self.progress_seen, self.heard_at = progress, now
            return False
        return now - self.heard_at > timeout_s

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's report of a failure outside the front door (writing an answer, say): one
        line, as proxy.observability.logging_setup.failure_summary puts it, never a traceback."""
        error = kw.get("exc_info")
        if isinstance(error, BaseException):
            logger.error(
                "unexpected failure in the HTTP server: %s",
                failure_summary(error, self.watchdog.scrub),
            )
            logger.debug("raised through:\n%s", failure_frames(error))
        else:
            logger.error("unexpected failure in the HTTP server: %s", args[0] if args else "")

    def handle_error(
        self,
        request: web.BaseRequest,
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
        # No head was read to take a client's id from: the refusal gets one of its own.
        request_id = new_request_id()
        if isinstance(exc, ConnectionError):  # the client went away; nothing can be said to it
            logger.debug("a client went away before its answer (%s)", reason)
        else:
            logger.warning(
                "refused a request the HTTP parser rejected (%d, %s; request id %s)",
                status,
                reason,
                request_id,
            )
        answer = error_answer(status, code, text, reason, request_id=request_id)
        answer.force_close()
        return answer


class Watchdog:
    """Admits connections up to the limit and closes those past their time, sweeping them all
    every `limits.sweep_interval_s`; drains them when the server stops."""

    def __init__(
        self, limits: ConnectionLimits, loop: asyncio.AbstractEventLoop, scrub: Scrub
    ) -> None:
        self.limits = limits
        self.scrub = scrub  # the redactor's, for failures the connections report
        self.clock = loop.time
        self.connections: set[ProxyConnection] = set()
        self.busy = 0  # connections with a request in progress
        self.draining = False
        self._all_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def admit(self, connection: ProxyConnection) -> bool:
        if self.draining or len(self.connections) >= self.limits.max_connections:
            return False
        self.connections.add(connection)
        return True

    def forget(self, connection: ProxyConnection) -> None:
        self.connections.discard(connection)
        connection.request_ended()

    def request_ended(self) -> None:
        self.busy -= 1
        if self.draining and self.busy <= 0:
            self._all_done.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inbound-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        interval = self.limits.sweep_interval_s
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> None:
        now = self.clock()
        for connection in [c for c in self.connections if c.overdue(self.limits, now)]:
            connection.force_close()

    async def drain(self, timeout_s: float) -> None:
        """Stop admitting, close idle connections, wait up to `timeout_s` for requests in
        progress, then cut the connections of those still running (which cancels them)."""
        self.draining = True
        for connection in list(self.connections):
            if not connection.busy:
                connection.force_close()
        if self.busy > 0:
            self._all_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_done.wait(), timeout_s)
        for connection in list(self.connections):
            connection.force_close()


class ProxyServer(web.Server):
    """aiohttp's low-level server, building `ProxyConnection`s that answer to one watchdog."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        limits: ConnectionLimits,
        scrub: Scrub,
        **options: Any,
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(handler, handler_cancellation=True, loop=loop, **options)
        # Each connection is built with these; aiohttp's own copy is private.
        self._connection_options = {**options, "loop": loop}
        self.watchdog = Watchdog(limits, loop, scrub)

    def __call__(self) -> web.RequestHandler:
        return ProxyConnection(self, self.watchdog, **self._connection_options)
