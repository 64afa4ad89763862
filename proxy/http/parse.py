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
    while (end := received.find(b"\r\n\r\n", start)) >= 0:
        if received[start + 9 : start + 10] != b"1":
            break
        start = end + 4  # past an interim (1xx) answer, which has no body
    else:
        return b""
    lines = received[start:end].split(b"\r\n")
    at = [index for index, line in enumerate(lines) if line[:15].lower() == _CONTENT_LENGTH]
    lengths = {item.strip() for index in at for item in lines[index][15:].split(b",")}
    length = lengths.pop() if len(lengths) == 1 else b""
    if not length.isdigit() or len(length) > 18:
        return None
    lines[at[0]] = b"Content-Length: " + length
    kept = [line for index, line in enumerate(lines) if index not in at[1:]]
    return received[:start] + b"\r\n".join(kept) + received[end:]
