"""The upstream client's framing, answer by answer: every answer of the corpus is fed to a
connection whole and split at every byte, and what the caller sees (status, reason, headers,
body, whether the connection may be reused, or the error) must not depend on the split."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import pytest

from proxy import http
from proxy.http.connection import Connection

# (id, request method, the answer's bytes)
CORPUS: list[tuple[str, str, bytes]] = [
    ("length", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfixed"),
    ("empty", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    (
        "chunked",
        "GET",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext\r\ndefg\r\n0\r\nT: 1\r\n\r\n",
    ),
    (
        "chunked with extensions",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;name=value\r\n \r\nA;x\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
    ),
    (
        "chunk size and a space",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA \r\n0123456789\r\n0\r\n\r\n",
    ),
    ("reason with a control character", "GET", b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n"),
    ("close-delimited", "GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"),
    ("close-delimited, no header", "GET", b"HTTP/1.1 200 OK\r\n\r\nuntil the end"),
    ("HEAD", "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
    ("HEAD chunked", "HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("204", "GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("304", "GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: x\r\n\r\n"),
    (
        "interim",
        "POST",
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal",
    ),
    (
        "five interim",
        "GET",
        b"HTTP/1.1 100 Continue\r\n\r\n" * 5 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "six interim",
        "GET",
        b"HTTP/1.1 100 Continue\r\n\r\n" * 6 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "headers in order",
        "GET",
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mixed:  padded value \t\r\n"
        b"set-cookie: b=2\r\nX-Utf8: caf\xc3\xa9\r\nX-Latin: caf\xe9\r\nContent-Length: 0\r\n\r\n",
    ),
    ("no reason", "GET", b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"),
    ("reason with spaces", "GET", b"HTTP/1.1 404 Not  Found \r\nContent-Length: 0\r\n\r\n"),
    ("HTTP/1.0", "GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    (
        "HTTP/1.0 keep-alive",
        "GET",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    ),
    ("HEAD, no length", "HEAD", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n"),
    (
        "Connection: close",
        "GET",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "Connection: keep-alive, close",
        "GET",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
    ),
    ("bytes after the answer", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
    ("Content-Length 2, 2", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"),
    (
        "Content-Length twice",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\ncontent-length: 2\r\n\r\nok",
    ),
    (
        "Content-Length twice after interim",
        "GET",
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
    ),
    ("Content-Length 1, 2", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx"),
    (
        "Content-Length 1 then 2",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    ),
    ("Content-Length -1", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    ("Content-Length 0x10", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n"),
    (
        "Content-Length huge",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1" + b"0" * 30 + b"\r\n\r\n",
    ),
    ("body cut short", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"),
    ("chunked cut short", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
    ("head cut short", "GET", b"HTTP/1.1 200 OK\r\nContent-Len"),
    ("nothing", "GET", b""),
    ("status 20", "GET", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status 000", "GET", b"HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status 600", "GET", b"HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n"),
    ("HTTP/2", "GET", b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("HTTP/2.0", "GET", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("ICY", "GET", b"ICY 200 OK\r\n\r\n"),
    ("bare LF", "GET", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    ("bad name", "GET", b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n"),
    ("space before colon", "GET", b"HTTP/1.1 200 OK\r\nX-A : x\r\nContent-Length: 0\r\n\r\n"),
    ("folded", "GET", b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n"),
    ("NUL in a value", "GET", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ("DEL in a value", "GET", b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 0\r\n\r\n"),
    (
        "TE and CL",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    ("TE gzip", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("TE on 1.0", "GET", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("101", "GET", b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
    (
        "chunk zz",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    ),
    (
        "chunk +2",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nab\r\n0\r\n\r\n",
    ),
    (
        "chunk 0x2",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
    ),
    (
        "chunk ' 2'",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 2\r\nab\r\n0\r\n\r\n",
    ),
    (
        "chunk too long",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    ),
]


class Outcome(NamedTuple):
    """What a caller sees of one answer."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    complete: bool  # the body had ended before the server closed the connection
    reusable: bool  # the connection went back to the pool
    error: str  # "", "head" or "body": where a protocol error surfaced


def answered(
    status: int,
    reason: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    reusable: bool = True,
) -> Outcome:
    return Outcome(status, reason, headers, body, True, reusable, "")


def until_close(headers: tuple[tuple[str, str], ...], body: bytes) -> Outcome:
    """A close-delimited 200 OK: complete only when the server closes."""
    return Outcome(200, "OK", headers, body, False, False, "")


def broken(headers: tuple[tuple[str, str], ...], body: bytes) -> Outcome:
    """A 200 OK whose body turned out malformed or cut short after `body`."""
    return Outcome(200, "OK", headers, body, False, False, "body")


REFUSED = Outcome(0, "", (), b"", False, False, "head")  # a protocol error instead of a head


# What the caller sees of each answer of the corpus, however it is split.
EXPECTED: dict[str, Outcome] = {
    "length": answered(200, "OK", (("Content-Length", "5"),), b"fixed"),
    "empty": answered(200, "OK", (("Content-Length", "0"),), b""),
    "chunked": answered(200, "OK", (("X-A", "1"), ("Transfer-Encoding", "chunked")), b"abcdefg"),
    "chunked with extensions": answered(
        200, "OK", (("Transfer-Encoding", "chunked"),), b"hello 0123456789"
    ),
    # RFC 9112 §7.1 allows no whitespace after a chunk size without an extension; llhttp's
    # leniency for it is one of those it calls dangerous.
    "chunk size and a space": broken((("Transfer-Encoding", "chunked"),), b""),
    # The reason phrase is passed on as text; llhttp checks only that it holds no CR or LF.
    "reason with a control character": answered(200, "O\x01K", (("Content-Length", "0"),), b""),
    "close-delimited": until_close((("Connection", "close"),), b"until the end"),
    "close-delimited, no header": until_close((), b"until the end"),
    "HEAD": answered(200, "OK", (("Content-Length", "1000"),), b""),
    "HEAD chunked": answered(200, "OK", (("Transfer-Encoding", "chunked"),), b""),
    "204": answered(204, "No Content", (), b""),
    "304": answered(304, "Not Modified", (("Content-Length", "50"), ("ETag", "x")), b""),
    "interim": answered(201, "Created", (("Content-Length", "5"), ("X-Final", "yes")), b"final"),
    "five interim": answered(200, "OK", (("Content-Length", "0"),), b""),
    "six interim": REFUSED,
    "headers in order": answered(
        200,
        "OK",
        (
            ("Set-Cookie", "a=1"),
            ("X-Mixed", "padded value"),
            ("set-cookie", "b=2"),
            ("X-Utf8", "café"),
            ("X-Latin", "caf\udce9"),
            ("Content-Length", "0"),
        ),
        b"",
    ),
    "no reason": answered(200, "", (("Content-Length", "2"),), b"ok"),
    "reason with spaces": answered(404, "Not  Found ", (("Content-Length", "0"),), b""),
    "HTTP/1.0": answered(200, "OK", (("Content-Length", "2"),), b"ok", reusable=False),
    # RFC 9112 §9.3: an HTTP/1.0 answer that asks for keep-alive may be kept.
    "HTTP/1.0 keep-alive": answered(
        200, "OK", (("Connection", "keep-alive"), ("Content-Length", "2")), b"ok"
    ),
    # Without a length llhttp can't tell that a HEAD answer has no body: it isn't kept.
    "HEAD, no length": answered(200, "OK", (("X-A", "1"),), b"", reusable=False),
    "Connection: close": answered(
        200, "OK", (("Connection", "close"), ("Content-Length", "2")), b"ok", reusable=False
    ),
    "Connection: keep-alive, close": answered(
        200,
        "OK",
        (("Connection", "keep-alive, Close"), ("Content-Length", "2")),
        b"ok",
        reusable=False,
    ),
    "bytes after the answer": answered(
        200, "OK", (("Content-Length", "2"),), b"ok", reusable=False
    ),
    "Content-Length 2, 2": answered(200, "OK", (("Content-Length", "2"),), b"ok"),
    "Content-Length twice": answered(200, "OK", (("Content-Length", "2"), ("X", "y")), b"ok"),
    "Content-Length twice after interim": answered(200, "OK", (("Content-Length", "2"),), b"ok"),
    "Content-Length 1, 2": REFUSED,
    "Content-Length 1 then 2": REFUSED,
    "Content-Length -1": REFUSED,
    "Content-Length 0x10": REFUSED,
    "Content-Length huge": REFUSED,
    "body cut short": broken((("Content-Length", "100"),), b"partial"),
    "chunked cut short": broken((("Transfer-Encoding", "chunked"),), b"ab"),
    "head cut short": REFUSED,
    "nothing": REFUSED,
    "status 20": REFUSED,
    "status 000": REFUSED,
    "status 600": REFUSED,
    "HTTP/2": REFUSED,
    "HTTP/2.0": REFUSED,
    "ICY": REFUSED,
    "bare LF": REFUSED,
    "bad name": REFUSED,
    "space before colon": REFUSED,
    "folded": REFUSED,
    "NUL in a value": REFUSED,
    "DEL in a value": REFUSED,
    "TE and CL": REFUSED,
    "TE gzip": REFUSED,
    "TE on 1.0": REFUSED,
    "101": REFUSED,
    "chunk zz": broken((("Transfer-Encoding", "chunked"),), b""),
    "chunk +2": broken((("Transfer-Encoding", "chunked"),), b""),
    "chunk 0x2": broken((("Transfer-Encoding", "chunked"),), b""),
    "chunk ' 2'": broken((("Transfer-Encoding", "chunked"),), b""),
    "chunk too long": broken((("Transfer-Encoding", "chunked"),), b"ab"),
}


class FakeTransport:
    """The socket under one connection: takes writes, closes when told, nothing else."""

    def __init__(self) -> None:
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def outcome(method: str, data: bytes, cuts: Sequence[int]) -> Outcome:
    """Feeds `data` in pieces cut at `cuts` to a connection, then closes it."""
    pool = http.UpstreamPool("http://127.0.0.1:9")
    conn = Connection(pool)
    transport = FakeTransport()
    conn.connection_made(cast(asyncio.Transport, transport))
    pool._slots = 1  # as if the pool had opened it
    head = http.request_head(method, "/", [("Host", "h")])
    sending = asyncio.ensure_future(conn.send(head, None, method == "HEAD", False))
    await asyncio.sleep(0)
    bounds = [0, *cuts, len(data)]
    for start, end in itertools.pairwise(bounds):
        if not transport.closing:
            conn.data_received(data[start:end])
    await asyncio.sleep(0)
    if not sending.done():
        conn.connection_lost(None)
    try:
        response = await sending
    except http.UpstreamProtocolError:
        return Outcome(0, "", (), b"", False, False, "head")
    parts = []
    while response.buffered:
        parts.append(await response.readany())
    complete = response.at_eof()
    error = ""
    if complete:
        response.release()
    else:
        conn.connection_lost(None)
        try:
            parts.append(await response.read())
        except http.UpstreamProtocolError:
            error = "body"
        complete = False
        response.release()
    headers = tuple(response.headers.items())
    body = b"".join(parts)
    reusable = pool.idle_connections == 1
    return Outcome(response.status, response.reason, headers, body, complete, reusable, error)


@pytest.mark.parametrize(("name", "method", "data"), CORPUS, ids=[c[0] for c in CORPUS])
async def test_every_split_of_an_answer_frames_as_expected(
    name: str, method: str, data: bytes
) -> None:
    expected = EXPECTED[name]
    assert await outcome(method, data, []) == expected
    for cut in range(1, len(data)):
        assert await outcome(method, data, [cut]) == expected, cut
    assert await outcome(method, data, range(1, len(data))) == expected


def test_every_answer_of_the_corpus_has_an_expectation() -> None:
    assert [name for name, _, _ in CORPUS] == list(EXPECTED)
