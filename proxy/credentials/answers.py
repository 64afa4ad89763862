"""What the proxy accepts from a credential source's answer (LWA, the Tokens API, STS).

These answers come from outside and end up in request headers and cache lifetimes, so they
are read bounded, decoded bounded, and their values checked before anything uses them.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Awaitable, Callable

# A token answer is a few kilobytes; anything near this is a broken or hostile server.
MAX_ANSWER_BYTES = 1024 * 1024
# A credential claiming a shorter life is still cached this long, so an answer such as
# `expires_in: 0.001` cannot turn every request into a fetch. Short enough that a 3 s test
# token is never used past its expiry.
MIN_LIFETIME_S = 1.0
# Header values must be visible ASCII: no space, control character (CR, LF, NUL) or non-ASCII.
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+\Z")
_ZLIB_WBITS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}


class AnswerRefused(Exception):
    """An answer the proxy will not use; the message says why in words fit for a user."""


async def read_capped(
    read_some: Callable[[], Awaitable[bytes]], declared_length: int | None
) -> bytes:
    """The body, read a piece at a time and given up on as soon as it passes the cap."""
    if declared_length is not None and declared_length > MAX_ANSWER_BYTES:
        raise AnswerRefused(f"the answer ({declared_length} bytes) is larger than 1 MiB")
    parts: list[bytes] = []
    size = 0
    while piece := await read_some():
        size += len(piece)
        if size > MAX_ANSWER_BYTES:
            raise AnswerRefused("the answer is larger than 1 MiB")
        parts.append(piece)
    return b"".join(parts)


def decoded(body: bytes, content_encoding: str) -> bytes:
    """The body without its Content-Encoding, never more than the cap once decoded either."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    wbits = _ZLIB_WBITS.get(encoding)
    if wbits is None:
        raise AnswerRefused(f"the answer is compressed with {encoding[:32]!r}, which it can't read")
    try:
        return _inflate(body, wbits)
    except zlib.error:
        if encoding != "deflate":
            raise AnswerRefused(f"the {encoding} answer does not decompress") from None
    try:  # "deflate" is often sent raw, without the zlib wrapper
        return _inflate(body, -zlib.MAX_WBITS)
    except zlib.error:
        raise AnswerRefused("the deflate answer does not decompress") from None


def _inflate(body: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, MAX_ANSWER_BYTES + 1)
    if len(out) > MAX_ANSWER_BYTES or inflater.unconsumed_tail:
        raise AnswerRefused("the answer is larger than 1 MiB once decompressed")
    if not inflater.eof:
        raise zlib.error("truncated")
    return out


def is_header_safe(value: str) -> bool:
    """True for a value that can go into a header as is: visible ASCII only, not empty."""
    return _VISIBLE_ASCII.match(value) is not None


def lifetime_s(value: object) -> float:
    """Seconds a credential lives, from an `expires_in`-style field: finite and positive."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AnswerRefused("the lifetime is not a number")
    try:
        seconds = float(value)
    except ValueError:
        raise AnswerRefused("the lifetime is not a number") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise AnswerRefused("the lifetime is not a positive number of seconds")
    return max(seconds, MIN_LIFETIME_S)
