"""A minimal HTTP/1.1 client for one upstream origin: a keep-alive pool of asyncio Protocols.

Built for the proxy's hot path (one small request out, one streamed answer back), where
aiohttp's client cost a quarter of the CPU. It speaks exactly what SP-API needs: keep-alive,
TLS with verification always on, Content-Length / chunked / close-delimited bodies, streaming
with backpressure, connect and read timeouts, and cancellation that never leaks a connection.

    UpstreamHttpError            base; `origin` is scheme://host:port, never a header or body
    ├── UpstreamConnectError     connecting failed: refused, DNS, TLS handshake or verification
    ├── UpstreamTimeoutError     connect timeout, no answer head within `read_timeout_s` of
    │                            sending, or a body silent for `read_timeout_s`
    └── UpstreamProtocolError    malformed answer, or the connection dropped mid-answer

Requests are written as given: the caller supplies every header, `Host` and `Content-Length`
included (nothing is added), and the target is sent byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import ssl
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

logger = logging.getLogger(__name__)

# Methods RFC 9110 calls idempotent (TRACE aside): re-sent once if a reused connection turns
# out to be dead before any answer arrived (the race with an upstream closing idle ones).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
HIGH_WATER = 256 * 1024  # unread body bytes at which the socket stops being read
LOW_WATER = 64 * 1024  # ... and is read again
MAX_HEAD = 64 * 1024  # status line + header fields, and the trailer section
MAX_CHUNK_LINE = 4 * 1024
MAX_INTERIM = 5  # 1xx answers before the final one; more is a server stalling in a loop
MAX_FIELDS = 100  # header fields in a head (aiohttp's client has the same limit)
JOINED_BODY = 64 * 1024  # bodies up to this size go out in the same write as the head
BODY_PIECE = 256 * 1024  # larger ones in pieces of this size, waiting for the socket to drain

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_FIELD_LINES = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")

# Parser states of a connection.
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(7)
_UNTIL_CLOSE, _DONE, _BROKEN = 7, 8, 9


class UpstreamHttpError(Exception):
    """Base of the client's errors: `origin` and `what` went wrong, never what the peer sent."""

    def __init__(self, origin: str, what: str) -> None:
        super().__init__(f"{origin}: {what}")
        self.origin = origin
        self.what = what


class UpstreamConnectError(UpstreamHttpError):
    pass


class UpstreamTimeoutError(UpstreamHttpError):
    pass


class UpstreamProtocolError(UpstreamHttpError):
    pass


class _StaleConnection(Exception):
    """A reused connection closed before the first byte of the answer: safe to re-send."""


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
        # RFC 8305 for names that may resolve to several addresses; an IP literal has one.
        self._happy_eyeballs_delay = None if is_ip_literal(self.host) else 0.25
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._loop = asyncio.get_running_loop()
        self._idle: deque[_Connection] = deque()  # oldest left, newest right
        self._slots = 0  # connections open or being opened, idle ones included
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._open: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        # Head deadlines and body silences: one watchdog for the pool, not a timer per request
        # (a timer per request cost ~3 % of the proxy's CPU). Noticed within one tick.
        self._watched: set[_Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._tick_s = min(1.0, read_timeout_s / 4)
        self._closed = False

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        """Connections open or being opened (for tests and metrics)."""
        return self._slots

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def watch(self, conn: _Connection) -> None:
        self._watched.add(conn)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._tick_s, self._check_silences)

    def unwatch(self, conn: _Connection) -> None:
        self._watched.discard(conn)

    def _check_silences(self) -> None:
        self._watchdog = None
        now = self._loop.time()
        for conn in [c for c in self._watched if c.overdue(now)]:
            self._watched.discard(conn)
            conn.time_out()
        if self._watched:
            self._watchdog = self._loop.call_later(self._tick_s, self._check_silences)

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
        head = request_head(method, target, headers)
        head_only = method == "HEAD"
        # An idle connection is the usual case: take it without entering _acquire's coroutine.
        conn = None if self._closed else self._pop_idle()
        reused = conn is not None
        if conn is None:
            conn, reused = await self._acquire()
        try:
            return await conn.send(head, body, head_only, reused)
        except _StaleConnection:
            if method not in IDEMPOTENT_METHODS:
                self._slot_freed()
                raise UpstreamProtocolError(
                    self.origin,
                    f"closed a kept-alive connection before answering; {method} is not re-sent",
                ) from None
        except BaseException:
            self._slot_freed()
            raise
        logger.debug("%s closed a kept-alive connection; re-sending %s once", self.origin, method)
        conn = await self._connect()  # in the dead connection's slot
        try:
            return await conn.send(head, body, head_only, False)
        except BaseException:
            self._slot_freed()
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

    async def _acquire(self) -> tuple[_Connection, bool]:
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
            waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
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

    def _give_back(self, waiter: asyncio.Future[_Connection | None]) -> None:
        """A cancelled waiter returns what it was handed (if anything) to the next one."""
        if not waiter.done() or waiter.cancelled():
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            return
        if waiter.exception() is not None:
            return
        handed = waiter.result()
        if handed is None:
            self._slot_freed()
        else:
            self.put_back(handed)

    def _pop_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            if conn.usable() and self._loop.time() - conn.idle_since < self.idle_timeout_s:
                return conn
            conn.close()
            self._slot_freed()
        return None

    async def _connect(self) -> _Connection:
        """A new connection in a slot the caller already holds (freed again on failure)."""
        try:
            options: dict[str, Any] = {}
            # asyncio's own loop only: uvloop's create_connection has no such option.
            if self._happy_eyeballs_delay is not None and isinstance(
                self._loop, asyncio.BaseEventLoop
            ):
                options["happy_eyeballs_delay"] = self._happy_eyeballs_delay
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await self._loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                    **options,
                )
        except BaseException as error:
            self._slot_freed()
            if isinstance(error, TimeoutError):
                raise UpstreamTimeoutError(
                    self.origin, f"connecting took longer than {self.connect_timeout_s:g} s"
                ) from None
            if isinstance(error, OSError):
                raise UpstreamConnectError(self.origin, describe_connect_error(error)) from None
            raise
        if self._closed:
            conn.abort()
            self._slot_freed()
            raise UpstreamConnectError(self.origin, "the pool is closed")
        return conn

    def put_back(self, conn: _Connection) -> None:
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
        conn.idle_since = self._loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self._loop.call_at(conn.idle_since + self.idle_timeout_s, self._expire)

    def _slot_freed(self) -> None:
        """A connection is gone (or never came): its slot goes to a waiter, else is released."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots -= 1

    def idle_lost(self, conn: _Connection) -> None:
        """An idle connection the server closed (or that misbehaved) leaves the pool."""
        if conn.in_pool:
            conn.in_pool = False
            self._idle.remove(conn)
            self._slot_freed()

    def _expire(self) -> None:
        self._sweep = None
        idle = self._idle
        cutoff = self._loop.time() - self.idle_timeout_s
        while idle and idle[0].idle_since <= cutoff:
            conn = idle.popleft()
            conn.in_pool = False
            conn.close()
            self._slot_freed()
        if idle and not self._closed:
            self._sweep = self._loop.call_at(idle[0].idle_since + self.idle_timeout_s, self._expire)

    def opened(self, conn: _Connection) -> None:
        self._open.add(conn)

    def closed(self, conn: _Connection) -> None:
        self._open.discard(conn)


class _Connection(asyncio.Protocol):
    """One connection: writes a request, parses the answer, and buffers its body.

    The body buffer lives here (reused request after request) and the `UpstreamResponse` only
    points at the connection: nothing here refers back to it, so a response dropped without
    `release()` is collected at once and its `__del__` frees the connection.
    """

    __slots__ = (
        "_chunks",
        "_drain",
        "_eof",
        "_failure",
        "_head_deadline",
        "_head_only",
        "_head_waiter",
        "_headers",
        "_in_use",
        "_interim",
        "_keep_alive",
        "_last_data",
        "_loop",
        "_lost",
        "_pending",
        "_pool",
        "_reading_paused",
        "_reason",
        "_remaining",
        "_reused",
        "_size",
        "_state",
        "_status",
        "_waiter",
        "_writing_paused",
        "got_bytes",
        "idle_since",
        "in_pool",
        "is_closed",
        "transport",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool._loop
        self.transport: asyncio.Transport | None = None
        self.is_closed = False
        self.in_pool = False
        self.idle_since = 0.0
        self.got_bytes = False
        self._in_use = False
        self._state = _IDLE
        self._pending = b""
        self._remaining = 0
        self._keep_alive = True
        self._head_only = False
        self._reused = False
        self._head_waiter: asyncio.Future[None] | None = None
        self._head_deadline = 0.0  # loop time the final head must be in by; 0 once it is
        self._interim = 0
        self._status = 0
        self._reason = ""
        self._headers = _EMPTY_HEADERS
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._failure: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._last_data = 0.0
        self._reading_paused = False
        self._writing_paused = False
        self._lost: asyncio.Future[None] | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports don't subclass asyncio.Transport, but offer the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self._pool.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        self._pool.closed(self)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._wake_drain()
        if self.in_pool:
            self._pool.idle_lost(self)
            return
        state = self._state
        if state == _UNTIL_CLOSE and exc is None:
            self._finish_body()
        elif state == _HEAD and not self.got_bytes:
            if self._reused:
                self._fail(_StaleConnection())
            else:
                self._fail(self._protocol_error("closed the connection without answering"))
        elif _HEAD <= state <= _UNTIL_CLOSE:
            self._fail(self._protocol_error("closed the connection in the middle of its answer"))

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._last_data = self._loop.time()
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        try:
            self._parse(data)
        except UpstreamProtocolError as error:
            self._fail(error)

    # the pool's side

    def usable(self) -> bool:
        transport = self.transport
        return not self.is_closed and transport is not None and not transport.is_closing()

    def lost(self) -> asyncio.Future[None]:
        if self._lost is None:
            self._lost = self._loop.create_future()
            if self.is_closed:
                self._lost.set_result(None)
        return self._lost

    def shut(self) -> None:
        """Orderly close (pool shutdown); an answer still being read fails."""
        if not self.is_closed and _HEAD <= self._state <= _UNTIL_CLOSE:
            self._fail(self._protocol_error("was cut off: the pool was closed"))
        else:
            self.close()

    def close(self) -> None:
        self._state = _BROKEN
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._state = _BROKEN
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    # one exchange

    async def send(
        self, head: bytes, body: bytes | None, head_only: bool, reused: bool
    ) -> UpstreamResponse:
        """Write the request and wait for the answer's head (interim 1xx answers skipped)."""
        transport = self.transport
        assert transport is not None
        if not self.usable():
            self.abort()
            if reused:
                raise _StaleConnection()
            raise self._protocol_error("closed the connection before the request was sent")
        self._in_use = True
        self._state = _HEAD
        self._reused = reused
        self._head_only = head_only
        self._keep_alive = True
        self.got_bytes = False
        self._eof = False
        self._failure = None
        self._chunks.clear()
        self._size = 0
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._head_waiter = waiter
        self._interim = 0
        self._arm_timer()
        # A deadline, not a silence: a head dripped a byte at a time must not hold the
        # connection (and the caller) any longer than a silent server would.
        self._head_deadline = self._last_data + self._pool.read_timeout_s
        try:
            if not body:
                transport.write(head)
            elif len(body) <= JOINED_BODY:
                transport.write(head + body)
            else:
                transport.write(head)
                await self._write_body(body)
            await waiter
        except BaseException:
            self._in_use = False
            self.abort()
            raise
        finally:
            self._head_waiter = None
            self._head_deadline = 0.0
            self._cancel_timer()
        return UpstreamResponse(self, self._status, self._reason, self._headers)

    async def _write_body(self, body: bytes) -> None:
        view = memoryview(body)
        transport = self.transport
        assert transport is not None
        for offset in range(0, len(body), BODY_PIECE):
            waiter = self._head_waiter
            if waiter is not None and waiter.done():
                # Answered (or failed) before the body was sent: the connection can't carry
                # another request, since the server may still be reading what is left.
                self._keep_alive = False
                return
            transport.write(view[offset : offset + BODY_PIECE])
            if self._writing_paused and not self.is_closed:
                self._drain = self._loop.create_future()
                try:
                    await self._drain
                finally:
                    self._drain = None

    def _wake_drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def release(self) -> None:
        """The response is done with: back to the pool if its answer was received whole."""
        if not self._in_use:
            return
        self._in_use = False
        self._chunks.clear()
        self._size = 0
        pool = self._pool
        if self._state == _DONE and self._keep_alive and self.usable():
            self._state = _IDLE
            pool.put_back(self)
        elif self._state == _DONE and not self._unsent():
            self.close()
            pool._slot_freed()
        else:
            self.abort()
            pool._slot_freed()

    def _unsent(self) -> int:
        """Request bytes still queued (an upload the server answered before reading it)."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def abandon(self) -> None:
        """The reader was cancelled: the connection is closed, whatever state it is in."""
        if self._in_use:
            self._in_use = False
            self.abort()
            self._pool._slot_freed()

    # the body, as the response reads it

    async def _buffered_or_eof(self) -> bool:
        """Wait until some body is buffered: True, or False at the end of the body."""
        while not self._chunks:
            if self._failure is not None:
                raise self._failure
            if self._eof:
                return False
            await self._wait()
        return True

    async def readany(self) -> bytes:
        if not await self._buffered_or_eof():
            return b""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if self._reading_paused:
            self._resume_reading()
        return data

    async def read(self, n: int) -> bytes:
        return self._take(n) if await self._buffered_or_eof() else b""

    async def readexactly(self, n: int) -> bytes:
        while self._size < n:
            if self._failure is not None:
                raise self._failure
            if self._eof:
                partial = b"".join(self._chunks)
                self._chunks.clear()
                self._size = 0
                raise asyncio.IncompleteReadError(partial, n)
            await self._wait()
        return self._take(n)

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    @property
    def buffered(self) -> int:
        return self._size

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        taken: list[bytes] = []
        need = n
        while chunks and need:
            chunk = chunks[0]
            if len(chunk) <= need:
                taken.append(chunk)
                need -= len(chunk)
                del chunks[0]
            else:
                taken.append(chunk[:need])
                chunks[0] = chunk[need:]
                need = 0
        data = taken[0] if len(taken) == 1 else b"".join(taken)
        self._size -= len(data)
        if self._reading_paused and self._size <= LOW_WATER:
            self._resume_reading()
        return data

    async def _wait(self) -> None:
        if not self._in_use:
            raise self._protocol_error("answer was read after release()")
        waiter = self._waiter = self._loop.create_future()
        self._arm_timer()
        try:
            await waiter
        finally:
            self._waiter = None
            self._cancel_timer()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if not self.is_closed and self.transport is not None:
            self.transport.resume_reading()

    # the read timeout: watched while someone waits for the server; it fires after a silence

    def _arm_timer(self) -> None:
        self._last_data = self._loop.time()
        self._pool.watch(self)

    def _cancel_timer(self) -> None:
        self._pool.unwatch(self)

    def overdue(self, now: float) -> bool:
        deadline = self._head_deadline or self._last_data + self._pool.read_timeout_s
        return now >= deadline

    def time_out(self) -> None:
        pool = self._pool
        if self._head_deadline:
            what = f"sent no complete answer head within {pool.read_timeout_s:g} s"
        else:
            what = f"sent nothing for {pool.read_timeout_s:g} s"
        self._fail(UpstreamTimeoutError(pool.origin, what))

    # failures

    def _protocol_error(self, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(self._pool.origin, what)

    def _fail(self, error: Exception) -> None:
        """The exchange can't go on: tell whoever waits, and drop the connection."""
        if self._state == _BROKEN:
            return
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif self._in_use:
            self._failure = error
            self._wake()
        self._wake_drain()
        self.abort()
        if self.in_pool:
            self._pool.idle_lost(self)

    # parsing

    def _parse(self, data: bytes) -> None:
        pos = 0
        end = len(data)
        self._last_data = self._loop.time()
        while True:
            state = self._state
            if state == _HEAD:
                self.got_bytes = True
                at = data.find(b"\r\n\r\n", pos)
                if at < 0:
                    if end - pos > MAX_HEAD:
                        raise self._protocol_error("sent a response head over 64 KiB")
                    self._pending = data[pos:]
                    return
                if at - pos > MAX_HEAD:
                    raise self._protocol_error("sent a response head over 64 KiB")
                pos = self._on_head(data, pos, at)
            elif state in (_LENGTH, _CHUNK_DATA):
                available = end - pos
                if available <= 0:
                    return
                remaining = self._remaining
                if available <= remaining:
                    self._feed(data if pos == 0 else data[pos:])
                    pos = end
                    remaining -= available
                else:
                    self._feed(data[pos : pos + remaining])
                    pos += remaining
                    remaining = 0
                self._remaining = remaining
                if remaining == 0:
                    if state == _LENGTH:
                        self._finish_body()
                    else:
                        self._state = _CHUNK_END
            elif state == _CHUNK_SIZE_LINE:
                at = data.find(b"\r\n", pos)
                if at < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise self._protocol_error("sent a chunk-size line over 4 KiB")
                    self._pending = data[pos:]
                    return
                match = _CHUNK_SIZE.fullmatch(data, pos, at)
                if match is None:
                    raise self._protocol_error("sent a malformed chunk size")
                size = int(match.group(1), 16)
                pos = at + 2
                if size:
                    self._remaining = size
                    self._state = _CHUNK_DATA
                else:
                    self._remaining = MAX_HEAD  # budget for the trailer section
                    self._state = _TRAILERS
            elif state == _CHUNK_END:
                if end - pos < 2:
                    if end - pos == 1 and data[pos] != 13:
                        raise self._protocol_error("sent chunk data longer than its size")
                    self._pending = data[pos:]
                    return
                if data[pos : pos + 2] != b"\r\n":
                    raise self._protocol_error("sent chunk data longer than its size")
                pos += 2
                self._state = _CHUNK_SIZE_LINE
            elif state == _TRAILERS:
                at = data.find(b"\r\n", pos)
                if at < 0:
                    if end - pos > self._remaining:
                        raise self._protocol_error("sent a trailer section over 64 KiB")
                    self._pending = data[pos:]
                    return
                self._remaining -= at + 2 - pos
                if self._remaining < 0:
                    raise self._protocol_error("sent a trailer section over 64 KiB")
                if at == pos:
                    pos += 2
                    self._finish_body()
                else:
                    pos = at + 2  # a trailer field: ignored
            elif state == _UNTIL_CLOSE:
                if pos < end:
                    self._feed(data if pos == 0 else data[pos:])
                return
            elif state == _DONE:
                if pos < end:
                    self._keep_alive = False  # bytes after the answer: don't trust the rest
                return
            else:  # _IDLE (unsolicited bytes) or _BROKEN
                if state == _IDLE:
                    self._fail(self._protocol_error("sent data while no request was outstanding"))
                return

    def _on_head(self, data: bytes, start: int, at: int) -> int:
        """Parse status line and fields of data[start:at]; return where the body begins."""
        line_end = data.find(b"\r\n", start)
        status_line = _STATUS_LINE.fullmatch(data, start, line_end)
        if status_line is None:
            raise self._protocol_error("sent a malformed status line")
        if _FIELD_LINES.fullmatch(data, line_end + 2, at + 2) is None:
            raise self._protocol_error("sent a malformed header field")
        minor, code, reason = status_line.groups()
        status = int(code)
        fields = data[line_end + 2 : at].decode("utf-8", "surrogateescape")
        pairs = field_pairs(fields) if fields else []
        if len(pairs) > MAX_FIELDS:
            raise self._protocol_error(f"sent more than {MAX_FIELDS} header fields")
        headers: CIMultiDict[str] = CIMultiDict(pairs)
        body_at = at + 4
        if not 100 <= status <= 599:
            raise self._protocol_error("sent a status outside 100-599")
        if status < 200:
            if status == 101:
                raise self._protocol_error("switched protocols without being asked to")
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise self._protocol_error(f"sent more than {MAX_INTERIM} interim (1xx) answers")
            return body_at  # interim answer (100 Continue, 103 Early Hints): skipped
        keep_alive = minor == b"1"
        connection = headers.getall("Connection", ())
        # Most servers send one "keep-alive": nothing to look through.
        if keep_alive and connection and (len(connection) > 1 or connection[0] != "keep-alive"):
            for value in connection:
                if "close" in (token.strip().lower() for token in value.split(",")):
                    keep_alive = False
        self._keep_alive = keep_alive
        self._head_deadline = 0.0  # from here on, the body's silences are what is watched
        state = self._framing(headers, minor, status)
        self._status = status
        self._reason = reason.decode("utf-8", "surrogateescape") if reason else ""
        self._headers = CIMultiDictProxy(headers)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._wake_drain()  # answered early: a body still being written is cut short
        if state == _DONE:
            self._finish_body()
        else:
            self._state = state
        return body_at

    def _framing(self, headers: CIMultiDict[str], minor: bytes, status: int) -> int:
        """The body's framing (RFC 9112 §6.3); conflicting or unknown framing is refused."""
        if self._head_only or status == 204 or status == 304:
            return _DONE
        transfer_encoding = headers.getall("Transfer-Encoding", None)
        content_length = headers.getall("Content-Length", None)
        if transfer_encoding is not None:
            if content_length is not None:
                raise self._protocol_error("sent both Transfer-Encoding and Content-Length")
            if minor != b"1" or len(transfer_encoding) != 1:
                raise self._protocol_error("sent a Transfer-Encoding it may not use")
            if transfer_encoding[0].strip().lower() != "chunked":
                raise self._protocol_error("sent a Transfer-Encoding other than chunked")
            return _CHUNK_SIZE_LINE
        if content_length is not None:
            self._remaining = content_length_of(content_length)
            if self._remaining < 0:
                raise self._protocol_error("sent an invalid or conflicting Content-Length")
            if len(content_length) > 1 or "," in content_length[0]:
                one_content_length(headers, self._remaining)
            return _LENGTH if self._remaining else _DONE
        self._keep_alive = False
        return _UNTIL_CLOSE

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._size > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _finish_body(self) -> None:
        self._state = _DONE
        self._eof = True
        if self._reading_paused:  # nothing more will come; watch for the server closing
            self._resume_reading()
        self._wake()


class UpstreamResponse:
    """An answer: status, reason and headers at once, the body as it arrives.

    `content` is the response itself (`iter_any()`, `read(n)`, `readexactly(n)`, `at_eof()`),
    the surface `proxy/forward.py` uses. `release()` must be called when done: it returns the
    connection to the pool if the body was received whole and keep-alive holds, else closes it.
    If the task reading the body is cancelled, the connection is closed at once.
    """

    __slots__ = ("_conn", "headers", "reason", "status")

    def __init__(
        self, conn: _Connection, status: int, reason: str, headers: CIMultiDictProxy[str]
    ) -> None:
        self._conn: _Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.reason}>"

    def __del__(self) -> None:
        # Safety net for a response dropped without release(): never leak its pool slot.
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the loop may already be closed
                logger.debug("an upstream response was dropped without release()")
                self.release()

    @property
    def content(self) -> UpstreamResponse:
        return self

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet read (bounded by the pool's backpressure)."""
        return 0 if self._conn is None else self._conn.buffered

    def release(self) -> None:
        """Idempotent; unread body is dropped (the connection too, unless it was all received)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.release()

    def at_eof(self) -> bool:
        """True once the whole body has been received and read (or the response released)."""
        return self._conn is None or self._conn.at_eof()

    def iter_any(self) -> UpstreamResponse:
        return self

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.readany()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def readany(self) -> bytes:
        """What has arrived (waiting for something), or b"" at the end of the body."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            return await conn.readany()
        except asyncio.CancelledError:
            self._abandon(conn)
            raise

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (waiting for at least one), or the whole rest of the body if n < 0."""
        if n < 0:
            parts = []
            while chunk := await self.readany():
                parts.append(chunk)
            return b"".join(parts)
        conn = self._conn
        if conn is None or n == 0:
            return b""
        try:
            return await conn.read(n)
        except asyncio.CancelledError:
            self._abandon(conn)
            raise

    async def readexactly(self, n: int) -> bytes:
        """Exactly `n` bytes; asyncio.IncompleteReadError if the body ends first."""
        conn = self._conn
        if conn is None:
            raise asyncio.IncompleteReadError(b"", n)
        try:
            return await conn.readexactly(n)
        except asyncio.CancelledError:
            self._abandon(conn)
            raise

    def _abandon(self, conn: _Connection) -> None:
        # The reader went away mid-body: the connection can't be reused.
        self._conn = None
        conn.abandon()


_EMPTY_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request line and header block; refuses CR, LF or spaces where they would inject."""
    fields = [f"{name}: {value}\r\n" for name, value in headers]
    text = f"{method} {target} HTTP/1.1\r\n{''.join(fields)}\r\n"
    if text.count("\n") != len(fields) + 2 or text.count("\r") != len(fields) + 2:
        raise ValueError("a header or the target holds a CR or LF")
    if " " in target or not target or _TOKEN.fullmatch(method) is None:
        raise ValueError("the method or target is malformed")
    return text.encode("utf-8", "surrogateescape")


def field_pairs(block: str) -> list[tuple[str, str]]:
    """(name, value) of each `name:value` line of a field block `_FIELD_LINES` accepted.

    Split and partition rather than a regex: a lazy pattern stepping through every value
    cost ~10x as much, on every answer.
    """
    lines = [line.partition(":") for line in block.split("\r\n")]
    return [(name, value.strip(" \t")) for name, _, value in lines]


def content_length_of(values: list[str]) -> int:
    """The one length a Content-Length field holds ("5" or "5, 5"), or -1 if it is invalid."""
    if len(values) == 1:
        value = values[0]
        if value.isdigit() and value.isascii() and len(value) <= 18:
            return int(value)
    lengths = {item.strip() for value in values for item in value.split(",")}
    if len(lengths) != 1:
        return -1
    (length,) = lengths
    if not (length.isascii() and length.isdigit()) or len(length) > 18:
        return -1
    return int(length)


def one_content_length(headers: CIMultiDict[str], length: int) -> None:
    """Repeated equal lengths ("2, 2", or the field twice) become one field where the first was:
    passed on as they came, they would reach the client as a framing it may reject."""
    pairs = list(headers.items())
    headers.clear()
    for name, value in pairs:
        if name.lower() != "content-length":
            headers.add(name, value)
        elif length >= 0:
            headers.add(name, str(length))
            length = -1


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
