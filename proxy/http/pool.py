"""A keep-alive pool of connections to one origin: the upstream client's public face.

Built for the proxy's hot path (one small request out, one streamed answer back), where
aiohttp's client cost a quarter of the CPU. It speaks exactly what SP-API needs: keep-alive,
TLS with verification always on, Content-Length / chunked / close-delimited bodies (framed by
llhttp, see connection.py), streaming with backpressure, connect and answer timeouts, and
cancellation that never leaks a connection.

Requests are written as given: the caller supplies every header, `Host` and `Content-Length`
included (nothing is added), and the target is sent byte for byte. Through an egress proxy
(egress.py) an https origin is reached through a CONNECT tunnel opened once per connection, TLS
going end to end to the origin and verified against its name; an http origin gets what every
client sends an HTTP proxy: the target in absolute form, plus Proxy-Authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from proxy.http.connection import Connection, UpstreamResponse
from proxy.http.egress import EgressProxy
from proxy.http.errors import (
    EgressProxyError,
    StaleConnection,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from proxy.http.parse import MAX_HEAD, request_head

logger = logging.getLogger(__name__)

HeadWriter = Callable[[str, str, Iterable[tuple[str, str]]], bytes]

# Methods RFC 9110 calls idempotent (TRACE aside): re-sent once if a reused connection turns
# out to be dead before any answer arrived (the race with an upstream closing idle ones).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class UpstreamPool:
    """Keep-alive connections to one origin, reused last-in first-out.

    At most `max_connections` exist at once; further callers wait for one (FIFO). Idle ones are
    closed after `idle_timeout_s`, and one the server closes is dropped as soon as it notices.
    Create it inside the running event loop; close it with `close()` or `async with`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        idle_timeout_s: float = 30.0,
        egress: EgressProxy | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be http:// or https:// with a host")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        # Without any user:password the URL may carry: the origin goes into error messages.
        self.origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        if parts.scheme == "https":
            self._ssl: ssl.SSLContext | None = ssl_context or ssl.create_default_context()
        else:
            self._ssl = None
        self.max_connections = max_connections
        self.egress = egress
        # Chosen once here so that a pool without an egress proxy pays nothing per request.
        self._head: HeadWriter = request_head
        if egress is not None and self._ssl is None:
            self._head = absolute_form_head(self.origin, egress.authorization)
        # RFC 8305 for names that may resolve to several addresses; an IP literal has one.
        dialled = self.host if egress is None else egress.host
        self._happy_eyeballs_delay = None if is_ip_literal(dialled) else 0.25
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.loop = asyncio.get_running_loop()
        self._idle: deque[Connection] = deque()  # oldest left, newest right
        self._slots = 0  # connections open or being opened, idle ones included
        self.stale_resends = 0  # idempotent requests re-sent after a kept-alive connection died
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._open: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        # Head deadlines and body silences: one watchdog for the pool, not a timer per request
        # (a timer per request cost ~3 % of the proxy's CPU). Noticed within one tick.
        self._watched: set[Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._tick_s = min(1.0, read_timeout_s / 4)
        self._closed = False

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        """Connections open or being opened (for tests and metrics)."""
        return self._slots

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def watch(self, conn: Connection) -> None:
        self._watched.add(conn)
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self._tick_s, self._check_silences)

    def unwatch(self, conn: Connection) -> None:
        self._watched.discard(conn)

    def _check_silences(self) -> None:
        self._watchdog = None
        now = self.loop.time()
        for conn in [c for c in self._watched if c.overdue(now)]:
            self._watched.discard(conn)
            conn.time_out()
        if self._watched:
            self._watchdog = self.loop.call_later(self._tick_s, self._check_silences)

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None = None,
    ) -> UpstreamResponse:
        """Send one request; returns once the answer's head is in. The caller must `release()`.

        `target` is the path and query exactly as they go on the wire; `headers` are all the
        request's headers (Host and, with a body, Content-Length included; nothing is added).
        """
        head = self._head(method, target, headers)
        head_only = method == "HEAD"
        # An idle connection is the usual case: take it without entering _acquire's coroutine.
        conn = None if self._closed else self._pop_idle()
        reused = conn is not None
        if conn is None:
            conn, reused = await self._acquire()
        try:
            return await conn.send(head, body, head_only, reused)
        except StaleConnection:
            if method not in IDEMPOTENT_METHODS:
                self.slot_freed()
                raise UpstreamProtocolError(
                    self.origin,
                    f"closed a kept-alive connection before answering; {method} is not re-sent",
                ) from None
        except BaseException:
            self.slot_freed()
            raise
        logger.debug("%s closed a kept-alive connection; re-sending %s once", self.origin, method)
        self.stale_resends += 1
        conn = await self._connect()  # in the dead connection's slot
        try:
            return await conn.send(head, body, head_only, False)
        except BaseException:
            self.slot_freed()
            raise

    async def close(self) -> None:
        """Close every connection and refuse further requests."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamConnectError(self.origin, "the pool is closed"))
        for conn in self._idle:
            conn.in_pool = False
            self._slots -= 1
        self._idle.clear()
        connections = list(self._open)
        lost = [conn.lost() for conn in connections]
        for conn in connections:
            conn.shut()
        if lost:
            _, pending = await asyncio.wait(lost, timeout=1.0)
            if pending:
                for conn in connections:
                    conn.abort()
                await asyncio.wait(pending, timeout=1.0)

    # Slots: whoever holds a connection (a request, a response, the idle deque) holds its slot.

    async def _acquire(self) -> tuple[Connection, bool]:
        """A connection and whether it was reused; the caller holds its slot."""
        while True:
            if self._closed:
                raise UpstreamConnectError(self.origin, "the pool is closed")
            conn = self._pop_idle()
            if conn is not None:
                return conn, True
            if self._slots < self.max_connections:
                self._slots += 1
                return await self._connect(), False
            waiter: asyncio.Future[Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                # Only this rare path (every connection busy) pays for a timer.
                async with asyncio.timeout(self.read_timeout_s):
                    handed = await waiter
            except (asyncio.CancelledError, TimeoutError) as error:
                self._give_back(waiter)
                if isinstance(error, TimeoutError):
                    what = f"had no free connection within {self.read_timeout_s:g} s"
                    raise UpstreamTimeoutError(self.origin, what) from None
                raise
            if handed is None:  # a slot without a connection: open one in it
                return await self._connect(), False
            if handed.usable():
                return handed, True
            handed.abort()  # died on the way; its slot is ours
            return await self._connect(), False

    def _give_back(self, waiter: asyncio.Future[Connection | None]) -> None:
        """A cancelled waiter returns what it was handed (if anything) to the next one."""
        if not waiter.done() or waiter.cancelled():
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            return
        if waiter.exception() is not None:
            return
        handed = waiter.result()
        if handed is None:
            self.slot_freed()
        else:
            self.put_back(handed)

    def _pop_idle(self) -> Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            if conn.usable() and self.loop.time() - conn.idle_since < self.idle_timeout_s:
                return conn
            conn.close()
            self.slot_freed()
        return None

    async def _connect(self) -> Connection:
        """A new connection in a slot the caller already holds (freed again on failure)."""
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                conn = await self._open_connection()
        except BaseException as error:
            self.slot_freed()
            if isinstance(error, TimeoutError):
                through = "" if self.egress is None else f" through {self.egress.address}"
                raise UpstreamTimeoutError(
                    self.origin,
                    f"connecting{through} took longer than {self.connect_timeout_s:g} s",
                ) from None
            if isinstance(error, OSError):
                raise UpstreamConnectError(self.origin, describe_connect_error(error)) from None
            raise
        if self._closed:
            conn.abort()
            self.slot_freed()
            raise UpstreamConnectError(self.origin, "the pool is closed")
        return conn

    async def _open_connection(self) -> Connection:
        """A connection to the origin, TLS verified against the origin's name; through the
        egress proxy when there is one."""
        if self.egress is not None:
            return await self._open_through_proxy(self.egress)
        _, conn = await self.loop.create_connection(
            lambda: Connection(self),
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host if self._ssl is not None else None,
            **self._dial_options(),
        )
        return conn

    def _dial_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        # asyncio's own loop only: uvloop's create_connection has no such option.
        if self._happy_eyeballs_delay is not None and isinstance(self.loop, asyncio.BaseEventLoop):
            options["happy_eyeballs_delay"] = self._happy_eyeballs_delay
        return options

    async def _open_through_proxy(self, egress: EgressProxy) -> Connection:
        """To an http origin, a connection to the proxy (targets go in absolute form); to an
        https one, a CONNECT tunnel through it, then TLS with the origin over the tunnel."""
        try:
            if self._ssl is None:
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self), egress.host, egress.port, **self._dial_options()
                )
                return conn
            raw, handshake = await self.loop.create_connection(
                lambda: TunnelHandshake(self.loop), egress.host, egress.port, **self._dial_options()
            )
        except OSError as error:
            raise EgressProxyError(
                self.origin,
                f"the egress proxy {egress.address} could not be reached "
                f"({describe_connect_error(error)})",
            ) from None
        try:
            raw.write(connect_request(self.host, self.port, egress.authorization))
            try:
                status = await handshake.answer
            except (OSError, TunnelRefused) as error:
                what = str(error) if isinstance(error, TunnelRefused) else type(error).__name__
                raise EgressProxyError(
                    self.origin, f"the egress proxy {egress.address} broke off the tunnel ({what})"
                ) from None
            if not 200 <= status < 300:
                raise EgressProxyError(
                    self.origin,
                    f"the egress proxy {egress.address} refused to open a tunnel to "
                    f"{self.host}:{self.port} ({describe_refusal(status)})",
                )
            # TLS goes end to end: verified against the origin's name, never the proxy's.
            conn = Connection(self)
            tls = await self.loop.start_tls(raw, conn, self._ssl, server_hostname=self.host)
        except BaseException:
            raw.abort()
            raise
        if tls is None:  # the tunnel closed during the handshake
            raw.abort()
            raise EgressProxyError(
                self.origin, f"the tunnel through the egress proxy {egress.address} closed"
            )
        conn.connection_made(tls)
        return conn

    def put_back(self, conn: Connection) -> None:
        """A connection whose answer was read whole and may be reused."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if self._closed:
            conn.close()
            self._slots -= 1
            return
        conn.in_pool = True
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_at(conn.idle_since + self.idle_timeout_s, self._expire)

    def slot_freed(self) -> None:
        """A connection is gone (or never came): its slot goes to a waiter, else is released."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots -= 1

    def idle_lost(self, conn: Connection) -> None:
        """An idle connection the server closed (or that misbehaved) leaves the pool."""
        if conn.in_pool:
            conn.in_pool = False
            self._idle.remove(conn)
            self.slot_freed()

    def _expire(self) -> None:
        self._sweep = None
        idle = self._idle
        cutoff = self.loop.time() - self.idle_timeout_s
        while idle and idle[0].idle_since <= cutoff:
            conn = idle.popleft()
            conn.in_pool = False
            conn.close()
            self.slot_freed()
        if idle and not self._closed:
            self._sweep = self.loop.call_at(idle[0].idle_since + self.idle_timeout_s, self._expire)

    def opened(self, conn: Connection) -> None:
        self._open.add(conn)

    def closed(self, conn: Connection) -> None:
        self._open.discard(conn)


class TunnelRefused(Exception):
    """A CONNECT answer that is not HTTP, too long, or followed by bytes before our TLS."""


class TunnelHandshake(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT: its status once the head is complete. Whatever
    else the proxy says is never quoted (its reason phrase and body are its own words)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[int] = loop.create_future()
        self._received = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._received += data
        end = self._received.find(b"\r\n\r\n")
        if end < 0:
            if len(self._received) > MAX_HEAD:
                self.answer.set_exception(TunnelRefused("an answer head over 64 KiB"))
            return
        status_line = bytes(self._received[: self._received.find(b"\r\n")])
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            self.answer.set_exception(TunnelRefused("an answer that is not HTTP"))
            return
        if end + 4 != len(self._received) and 200 <= int(code) < 300:
            # Bytes after a 2xx head would be the origin's before our TLS hello: refuse.
            self.answer.set_exception(TunnelRefused("data before the TLS handshake"))
            return
        self.answer.set_result(int(code))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionResetError())


def connect_request(host: str, port: int, authorization: str | None) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    fields = [("Host", authority)]
    if authorization is not None:
        fields.append(("Proxy-Authorization", authorization))
    return request_head("CONNECT", authority, fields)


def absolute_form_head(origin: str, authorization: str | None) -> HeadWriter:
    """`request_head` for an http origin behind a proxy: the target as origin + path, and
    Proxy-Authorization when the proxy wants it (the proxy strips it before the origin)."""
    extra = () if authorization is None else (("Proxy-Authorization", authorization),)

    def head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
        return request_head(method, origin + target, [*headers, *extra])

    return head


def describe_refusal(status: int) -> str:
    if status in (401, 407):  # 407 is the standard; some proxies (tinyproxy) say 401
        return f"HTTP {status}: it wants credentials, or refused the ones in its URL"
    return f"HTTP {status}"


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def describe_connect_error(error: OSError) -> str:
    """The kind of failure, without anything the peer sent."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed ({error.reason or type(error).__name__})"
    return type(error).__name__
