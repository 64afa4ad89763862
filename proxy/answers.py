"""A small upstream answer sent to the client in one piece, head serialised by the proxy.

Most SP-API answers are a few KB of JSON with a Content-Length. For those, aiohttp's Response
machinery (a header multidict built and edited, defaults looked up, the head serialised, the
payload writer's bookkeeping) cost about a sixth of the proxy's CPU per request (issue 6). Here
the status line and the upstream's own fields are joined once and written with the body through
the request's stream writer, which keeps aiohttp's accounting of what was sent.

What aiohttp would have added is added the same way: a `Connection` field when the client's
HTTP version and its wish for keep-alive call for one, and `Date` when the upstream sent none
(RFC 9110 §6.6.1). Answers without a body by definition (HEAD, 204, 304) never come here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from email.utils import formatdate

from aiohttp import HttpVersion, HttpVersion10, HttpVersion11, web
from aiohttp.abc import AbstractStreamWriter


class WholeAnswer(web.StreamResponse):
    """Status, fields and body, written at `prepare()`; `write_eof()` then has nothing to do.

    Its own attributes are prefixed `_whole_` so they can't collide with StreamResponse's.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        fields: list[tuple[str, str]],
        body: bytes,
        *,
        needs_date: bool,
        request_id: str | None,
    ) -> None:
        super().__init__(status=status, reason=reason)
        self._whole_fields = fields  # the upstream's, less hop-by-hop fields and Content-Length
        self._whole_body = body
        self._whole_needs_date = needs_date
        self.request_id = request_id  # the upstream's x-amzn-RequestId, for the access line
        self._whole_sent = False
        self._whole_keep_alive = False
        self._whole_close = False  # force_close() was called

    @property
    def keep_alive(self) -> bool:
        return self._whole_keep_alive

    def force_close(self) -> None:
        self._whole_close = True
        self._whole_keep_alive = False

    @property
    def prepared(self) -> bool:
        return self._whole_sent

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._whole_sent:
            return None
        self._whole_sent = True
        self._whole_keep_alive = request.keep_alive and not self._whole_close
        head = answer_head(
            request.version,
            self.status,
            self.reason,
            self._whole_fields,
            keep_alive=self._whole_keep_alive,
            needs_date=self._whole_needs_date,
            body_length=len(self._whole_body),
        )
        await request.writer.write_eof(head + self._whole_body)
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        if data:
            raise RuntimeError("a WholeAnswer is sent whole at prepare()")


def answer_head(
    version: HttpVersion,
    status: int,
    reason: str,
    fields: Iterable[tuple[str, str]],
    *,
    keep_alive: bool,
    needs_date: bool,
    body_length: int,
) -> bytes:
    """The status line and header section, ending with the blank line."""
    lines = [f"HTTP/{version.major}.{version.minor} {status} {reason}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in fields]
    if needs_date:
        lines.append(f"Date: {http_date(int(time.time()))}\r\n")
    if keep_alive and version == HttpVersion10:
        lines.append("Connection: keep-alive\r\n")
    elif not keep_alive and version == HttpVersion11:
        lines.append("Connection: close\r\n")
    lines.append(f"Content-Length: {body_length}\r\n\r\n")
    text = "".join(lines)
    # Fields came through the client's parser, which refuses CR and LF in them; this guards the
    # reason and anything added, as aiohttp's serialiser does, without trusting either.
    if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
        raise ValueError("a response field holds a CR or LF")
    return text.encode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=2)
def http_date(second: int) -> str:
    """An IMF-fixdate such as `Thu, 26 Nov 2026 02:10:23 GMT`, one per second."""
    return formatdate(second, usegmt=True)
