"""The one writer of every answer the proxy gives: relayed from SP-API (whole or streamed), the
proxy's own errors and its own endpoints.

One policy for all of them: the status line is HTTP/1.1, or HTTP/1.0 to a 1.0 client; the fields
are the ones given, byte for byte (values from the upstream client arrive decoded as UTF-8 with
`surrogateescape` and are encoded back the same way, so a Latin-1 byte survives); the writer adds
only framing (`Content-Length` or `Transfer-Encoding: chunked`), `Connection` when the client's
version and keep-alive call for it, and `Date` when the fields hold none (RFC 9110 §6.6.1). No
`Server`, no default `Content-Type`.

aiohttp's Response would add both and drop or mangle bytes it can't encode as UTF-8, and its
header machinery cost about a sixth of the proxy's CPU per request. Here the head is joined once
and written through the request's stream writer (`AbstractStreamWriter.write`/`write_eof`, its
documented interface), together with a small body in one write. The class is a StreamResponse
only because a request handler must return one; it overrides the public methods the server calls
(`prepare`, `write`, `write_eof`, `keep_alive`, `force_close`) and reads nothing private.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable
from email.utils import formatdate

from aiohttp import HttpVersion10, web
from aiohttp.abc import AbstractStreamWriter

from proxy.observability.request_ids import REQUEST_ID_HEADER

# Statuses that never carry a body, whatever the fields say (RFC 9110 §6.4.1).
BODYLESS_STATUSES = frozenset({204, 304})


class Answer(web.StreamResponse):
    """Status, fields and either a whole body or a stream the caller writes.

    `body` given: everything is written at `prepare()`. `body` None: `prepare()` writes the head,
    then `write()`/`write_eof()` the body; `length` is its Content-Length when known, else the
    body is chunked (or, to an HTTP/1.0 client, ends when the connection closes).
    `reason` None: the status's standard phrase. Its own attributes are prefixed `_answer_` so
    they can't collide with StreamResponse's.
    """

    def __init__(
        self,
        status: int,
        reason: str | None,
        fields: list[tuple[str, str]],
        body: bytes | None = None,
        *,
        length: int | None = None,
        has_date: bool = False,
    ) -> None:
        super().__init__(status=status, reason=reason)
        self._answer_fields = fields  # never Content-Length or hop-by-hop fields
        self._answer_body = body
        self._answer_length = length
        self._answer_has_date = has_date
        self._answer_writer: AbstractStreamWriter | None = None
        self._answer_chunked = False
        self._answer_keep_alive = False
        self._answer_close = False  # force_close() was called
        self._answer_done = False

    def add_field(self, name: str, value: str) -> None:
        """One more field for the head; only before `prepare()`."""
        if self._answer_writer is not None:
            raise RuntimeError("add_field() after prepare()")
        self._answer_fields.append((name, value))

    @property
    def keep_alive(self) -> bool:
        return self._answer_keep_alive

    def force_close(self) -> None:
        self._answer_close = True
        self._answer_keep_alive = False

    @property
    def prepared(self) -> bool:
        return self._answer_writer is not None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._answer_writer is not None:
            return self._answer_writer
        writer = self._answer_writer = request.writer
        status, body = self.status, self._answer_body
        bodyless = request.method == "HEAD" or status in BODYLESS_STATUSES or status < 200
        version10 = request.version == HttpVersion10
        if body is not None:
            framing = "" if status == 204 or status < 200 else f"Content-Length: {len(body)}\r\n"
        elif self._answer_length is not None:
            framing = "" if status == 204 else f"Content-Length: {self._answer_length}\r\n"
        elif bodyless:
            framing = ""
        elif version10:
            framing = ""  # the body ends when the connection closes
            self._answer_close = True
        else:
            framing = "Transfer-Encoding: chunked\r\n"
            self._answer_chunked = True
        keep_alive = self._answer_keep_alive = request.keep_alive and not self._answer_close
        head = answer_head(
            version10,
            status,
            self.reason,
            self._answer_fields,
            keep_alive=keep_alive,
            needs_date=not self._answer_has_date,
            framing=framing,
        )
        if body is not None:
            self._answer_done = True
            await writer.write_eof(head if bodyless else head + body)
        elif bodyless:
            self._answer_done = True
            await writer.write_eof(head)
        else:
            await writer.write(head)
            if self._answer_chunked:
                writer.enable_chunking()  # body writes from here on are chunk-encoded
        return writer

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        writer = self._answer_writer
        if writer is None or self._answer_done:
            raise RuntimeError("write() needs a prepared, streamed answer")
        if data:
            await writer.write(data)

    async def write_eof(self, data: bytes = b"") -> None:
        if self._answer_done:
            return
        writer = self._answer_writer
        if writer is None:
            raise RuntimeError("write_eof() before prepare()")
        self._answer_done = True
        await writer.write_eof(data)

    async def drain(self) -> None:
        if self._answer_writer is not None:
            await self._answer_writer.drain()


def answer_head(
    version10: bool,
    status: int,
    reason: str,
    fields: Iterable[tuple[str, str]],
    *,
    keep_alive: bool,
    needs_date: bool,
    framing: str,
) -> bytes:
    """The status line and header section, ending with the blank line."""
    lines = [f"HTTP/1.0 {status} {reason}\r\n" if version10 else f"HTTP/1.1 {status} {reason}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in fields]
    if needs_date:
        lines.append(f"Date: {http_date(int(time.time()))}\r\n")
    if version10:
        if keep_alive:
            lines.append("Connection: keep-alive\r\n")
    elif not keep_alive:
        lines.append("Connection: close\r\n")
    lines.append(f"{framing}\r\n")
    text = "".join(lines)
    # Upstream fields came through a parser that refuses CR and LF in them; this guards the
    # reason, hints and anything added without trusting any of them. `framing` holds at most
    # one line of its own.
    expected = len(lines) + (1 if framing else 0)
    if text.count("\n") != expected or text.count("\r") != expected:
        raise ValueError("a response field holds a CR or LF")
    return text.encode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=2)
def http_date(second: int) -> str:
    """An IMF-fixdate such as `Thu, 26 Nov 2026 02:10:23 GMT`, one per second."""
    return formatdate(second, usegmt=True)


def error_answer(
    status: int,
    code: str,
    message: str,
    details: str = "",
    headers: dict[str, str] | None = None,
    *,
    request_id: str,
) -> Answer:
    """The proxy's own error in SP-API's shape, `x-spapi-proxy-error` naming its code.

    The request id is in the body as well as in `X-Request-Id`: a user who only kept the body
    can still quote the one id the proxy's log and the upstream know the call by. It sits beside
    `errors`, not in an entry, so the entries keep SP-API's exact fields.
    """
    entry = {"code": code, "message": message}
    if details:
        entry["details"] = details
    fields = [("Content-Type", "application/json"), *(headers or {}).items()]
    fields.append(("x-spapi-proxy-error", code))
    fields.append((REQUEST_ID_HEADER, request_id))
    body = json.dumps({"errors": [entry], "requestId": request_id}).encode()
    return Answer(status, None, fields, body)
