"""One upstream connection: writes a request, frames the answer with llhttp, buffers its body."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.http.errors import StaleConnection, UpstreamProtocolError, UpstreamTimeoutError
from proxy.http.parse import MAX_FIELDS, MAX_HEAD, MAX_INTERIM, one_content_length

if TYPE_CHECKING:
    from proxy.http.pool import UpstreamPool

logger = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024  # unread body bytes at which the socket stops being read
LOW_WATER = 64 * 1024  # ... and is read again
JOINED_BODY = 64 * 1024  # bodies up to this size go out in the same write as the head
BODY_PIECE = 256 * 1024  # larger ones in pieces of this size, waiting for the socket to drain

# States of a connection. _BODY is framed by llhttp (a length or chunks); _UNTIL_CLOSE by us,
# since httptools can't tell llhttp that the connection ended.
_IDLE, _HEAD, _BODY, _UNTIL_CLOSE, _DONE, _BROKEN = range(6)

Headers = CIMultiDictProxy[str]
# llhttp's reasons for a repeated Content-Length, which may still be one length said twice.
REPEATED_LENGTH = frozenset({"Duplicate Content-Length", "Invalid character in Content-Length"})


class Connection(asyncio.Protocol):
    """One connection: writes a request, parses the answer, and buffers its body.

    The body buffer lives here (reused request after request) and the `UpstreamResponse` only
    points at the connection: nothing here refers back to it, so a response dropped without
    `release()` is collected at once and its `__del__` frees the connection. llhttp calls the
    `on_*` methods from inside `data_received`.
    """

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.is_closed = False
        self.in_pool = False
        self.idle_since = 0.0
        self.got_bytes = False
        self._in_use = False
        self._state = _IDLE
        self._parser: httptools.HttpResponseParser | None = None
        self._fields: list[tuple[str, str]] = []
        self._reason = b""
        self._received: list[bytes] = []  # the head's bytes until it is complete
        self._framing = 0  # bytes that were not body since the last that was
        self._refusal: UpstreamProtocolError | None = None
        self._interim = 0
        self._keep_alive = True
        self._head_only = False
        self._reused = False
        self._head_waiter: asyncio.Future[None] | None = None
        self._head_deadline = 0.0  # loop time the final head must be in by; 0 once it is
        self._status = 0
        self._headers: Headers = CIMultiDictProxy(CIMultiDict())
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
                self._fail(StaleConnection())
            else:
                self._fail(self._protocol_error("closed the connection without answering"))
        elif _HEAD <= state <= _UNTIL_CLOSE:
            self._fail(self._protocol_error("closed the connection in the middle of its answer"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._last_data = self._loop.time()
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state >= _DONE or state == _IDLE:
            if state == _IDLE:
                self._fail(self._protocol_error("sent data while no request was outstanding"))
            self._keep_alive = False  # bytes after the answer: don't trust the rest
            return
        self._last_data = self._loop.time()
        parser = self._parser
        if state == _HEAD:
            self.got_bytes = True
            self._received.append(data)
            if parser is None:  # waiting for the rest of a head with repeated lengths
                self._replay()
                return
        assert parser is not None
        before = self._size
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._parse_failed(error)
            return
        body = self._size - before
        self._framing = len(data) - body + (0 if body else self._framing)
        # llhttp buffers a head, chunk-size line or trailer until it ends: bound what it holds.
        if self._framing > MAX_HEAD:
            self._fail(self._protocol_error("sent a head or chunk framing over 64 KiB"))

    # llhttp's callbacks

    def on_message_begin(self) -> None:
        if self._state == _HEAD:
            self._fields = []
            self._reason = b""
        elif self._state == _DONE:
            self._keep_alive = False  # another answer after the answer: don't trust the rest

    def on_status(self, reason: bytes) -> None:
        if self._state == _HEAD:
            self._reason += reason  # may come in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _HEAD:  # trailer fields are dropped
            text = value.decode("utf-8", "surrogateescape").strip(" \t")
            self._fields.append((name.decode("utf-8", "surrogateescape"), text))

    def on_headers_complete(self) -> None:
        if self._state != _HEAD:
            return
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        version = parser.get_http_version()
        if not 100 <= status <= 599:
            self._refuse("sent a status outside 100-599")
        if version != "1.1" and version != "1.0":
            self._refuse("sent an HTTP version other than 1.0 and 1.1")
        if len(self._fields) > MAX_FIELDS:
            self._refuse(f"sent more than {MAX_FIELDS} header fields")
        if status < 200:
            if status == 101:
                self._refuse("switched protocols without being asked to")
            self._interim += 1
            if self._interim > MAX_INTERIM:
                self._refuse(f"sent more than {MAX_INTERIM} interim (1xx) answers")
            return  # interim answer (100 Continue, 103 Early Hints): skipped
        headers: CIMultiDict[str] = CIMultiDict(self._fields)
        # llhttp's verdict: Connection tokens, the version, and whether the body ends at EOF.
        self._keep_alive = parser.should_keep_alive()
        state = self._framing_of(headers, version, status)
        self._head_deadline = 0.0  # from here on, the body's silences are what is watched
        self._received = []
        self._status = status
        self._headers = CIMultiDictProxy(headers)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._wake_drain()  # answered early: a body still being written is cut short
        if state == _DONE:
            if self._head_only:
                self._parser = None  # it expects the body a GET would have had
            self._finish_body()
        else:
            self._state = state

    def on_body(self, body: bytes) -> None:
        if self._state == _DONE:
            self._keep_alive = False
        else:
            self._feed(body)

    def on_message_complete(self) -> None:
        if self._state == _BODY:
            self._finish_body()

    def _framing_of(self, headers: CIMultiDict[str], version: str, status: int) -> int:
        """The body's framing (RFC 9112 §6.3) where llhttp accepts more than we do."""
        if self._head_only or status == 204 or status == 304:
            return _DONE
        transfer_encoding = headers.getall("Transfer-Encoding", None)
        if transfer_encoding is not None:
            if version != "1.1" or len(transfer_encoding) != 1:
                self._refuse("sent a Transfer-Encoding it may not use")
            if transfer_encoding[0].strip().lower() != "chunked":
                self._refuse("sent a Transfer-Encoding other than chunked")
            return _BODY
        return _BODY if "Content-Length" in headers else _UNTIL_CLOSE

    def _refuse(self, what: str) -> None:
        """Stops llhttp from a callback; `data_received` then fails the exchange with `what`."""
        self._refusal = self._protocol_error(what)
        raise self._refusal

    def _parse_failed(self, error: httptools.HttpParserError) -> None:
        if self._state == _DONE:
            self._keep_alive = False  # garbage after a complete answer
            return
        refusal, self._refusal = self._refusal, None
        if refusal is None and self._state == _HEAD and str(error) in REPEATED_LENGTH:
            self._replay()
            return
        # llhttp's reasons are fixed phrases ("Invalid header value char"), never the bytes.
        self._fail(refusal or self._protocol_error(f"sent a malformed answer ({error})"))

    def _replay(self) -> None:
        """Feeds the head received so far again with its repeated equal lengths made one."""
        received = b"".join(self._received)
        fixed = one_content_length(received)
        if fixed == b"":
            if len(received) > MAX_HEAD:
                self._fail(self._protocol_error("sent a response head over 64 KiB"))
            self._parser = None  # the rest is awaited before parsing again
            return
        if fixed is None or fixed == received:
            self._fail(self._protocol_error("sent an invalid or conflicting Content-Length"))
            return
        self._parser = httptools.HttpResponseParser(self)
        self._received = []
        self._interim = 0
        self.data_received(fixed)

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
                raise StaleConnection()
            raise self._protocol_error("closed the connection before the request was sent")
        if self._parser is None:
            self._parser = httptools.HttpResponseParser(self)
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
        self._framing = 0
        self._interim = 0
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._head_waiter = waiter
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
        reason = self._reason.decode("utf-8", "surrogateescape")
        return UpstreamResponse(self, self._status, reason, self._headers)

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
            pool.slot_freed()
        else:
            self.abort()
            pool.slot_freed()

    def _unsent(self) -> int:
        """Request bytes still queued (an upload the server answered before reading it)."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def abandon(self) -> None:
        """The reader was cancelled: the connection is closed, whatever state it is in."""
        if self._in_use:
            self._in_use = False
            self.abort()
            self._pool.slot_freed()

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
        except asyncio.CancelledError:
            self.abandon()  # the reader went away mid-body: the connection can't be reused
            raise
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

    # the head deadline and body silences: watched while someone waits for the server

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


class UpstreamResponse:
    """An answer: status, reason and headers at once, the body as it arrives.

    `content` is the response itself (`iter_any()`, `read(n)`, `readexactly(n)`, `at_eof()`),
    the surface `proxy/forwarding/forward.py` uses. `release()` must be called when done: it
    returns the connection to the pool if the body was received whole and keep-alive holds, else
    closes it. If the task reading the body is cancelled, the connection is closed at once.
    """

    __slots__ = ("_conn", "headers", "reason", "status")

    def __init__(self, conn: Connection, status: int, reason: str, headers: Headers) -> None:
        self._conn: Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers

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
        return b"" if conn is None else await conn.readany()

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (waiting for at least one), or the whole rest of the body if n < 0."""
        if n < 0:
            parts = []
            while chunk := await self.readany():
                parts.append(chunk)
            return b"".join(parts)
        conn = self._conn
        return b"" if conn is None or n == 0 else await conn.read(n)

    async def readexactly(self, n: int) -> bytes:
        """Exactly `n` bytes; asyncio.IncompleteReadError if the body ends first."""
        conn = self._conn
        if conn is None:
            raise asyncio.IncompleteReadError(b"", n)
        return await conn.readexactly(n)
