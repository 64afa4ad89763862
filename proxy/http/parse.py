"""The bytes of a request head, and the few rules llhttp leaves to its caller."""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_HEAD = 64 * 1024  # the answer's head (interim ones included), or chunk framing and trailers
MAX_FIELDS = 100  # header fields in a head (aiohttp's client has the same limit)
MAX_INTERIM = 5  # 1xx answers before the final one; more is a server stalling in a loop

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTENT_LENGTH = b"content-length:"


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request line and header block; refuses CR, LF or spaces where they would inject."""
    fields = [f"{name}: {value}\r\n" for name, value in headers]
    text = f"{method} {target} HTTP/1.1\r\n{''.join(fields)}\r\n"
    if text.count("\n") != len(fields) + 2 or text.count("\r") != len(fields) + 2:
        raise ValueError("a header or the target holds a CR or LF")
    if " " in target or not target or _TOKEN.fullmatch(method) is None:
        raise ValueError("the method or target is malformed")
    return text.encode("utf-8", "surrogateescape")


def one_content_length(received: bytes) -> bytes | None:
    """`received` with the final head's repeated Content-Length ("2, 2", or the field twice)
    made one field where the first was, b"" if that head is not complete yet, or None if the
    lengths disagree or one is not a number.

    llhttp refuses any repeated length; RFC 9110 §8.6 lets a recipient take equal ones as one,
    and a client passed them on as they came could reject the answer for its framing.
    """
    start = 0
    while True:  # past interim (1xx) answers, which have no body
        end = received.find(b"\r\n\r\n", start)
        if end < 0:
            return b""
        if received[start + 9 : start + 10] != b"1":
            break
        start = end + 4
    lines = received[start:end].split(b"\r\n")
    lengths = {
        item.strip()
        for line in lines
        if line[:15].lower() == _CONTENT_LENGTH
        for item in line[15:].split(b",")
    }
    if len(lengths) != 1:
        return None
    (length,) = lengths
    if not length.isdigit() or len(length) > 18:
        return None
    kept: list[bytes] = []
    for line in lines:
        if line[:15].lower() != _CONTENT_LENGTH:
            kept.append(line)
        elif length:
            kept.append(b"Content-Length: " + length)
            length = b""
    return received[:start] + b"\r\n".join(kept) + received[end:]
