"""Query re-encoding: the client's raw query string → the exact RFC 3986 string sent and signed.

SP-API reads `+` as a space and AWS canonicalises a query by decoding and re-encoding it with
only `-_.~` left bare, so the proxy sends that form itself: what goes on the wire is then already
canonical, and the signature computed over it is the one the gateway recomputes
(docs/sp-api-facts.md §10).

Rules: `+` means space; percent-escapes are decoded and re-encoded (uppercase hex);
pair order, repeated keys and empty values are kept; a bare `a` becomes `a=`; empty pairs are
dropped. Work is done on bytes so a value that is not UTF-8 keeps its exact meaning.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote_from_bytes

from proxy.errors import InvalidRequest

# Characters RFC 3986 leaves unencoded in a canonical SigV4 query.
_UNRESERVED: Final = r"A-Za-z0-9\-._~"
# A %XX escape is already canonical only if it is uppercase and its byte is *not* unreserved
# (re-encoding would turn `%41` into `A`). Unreserved bytes: 2D 2E 30-39 41-5A 5F 61-7A 7E.
_CANONICAL_ESCAPE: Final = (
    r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
)
# Possessive runs (Python 3.11+): a character class matched per character through an
# alternation cost ~1 µs per query; runs can't overlap an escape, so nothing needs backtracking.
_COMPONENT: Final = rf"(?:[{_UNRESERVED}]++|{_CANONICAL_ESCAPE})*+"
_PAIR: Final = rf"{_COMPONENT}={_COMPONENT}"
# Non-empty pairs, each with exactly one `=`, nothing else: the output would equal the input.
_ALREADY_CANONICAL: Final = re.compile(rf"{_PAIR}(?:&{_PAIR})*")

_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
# Raw bytes no client may put in a request target (RFC 9112 forbids them; they are never data).
_FORBIDDEN_RAW: Final = re.compile(rb"[\x00-\x1f\x7f]")
_MAX_NAME_SHOWN: Final = 64


def encode_query(raw_query: str) -> str:
    """Return the RFC 3986 form of `raw_query` (no leading `?`), to send and to sign as-is.

    Raises InvalidRequest, naming the parameter, for a malformed percent-escape or a raw
    control character.
    """
    if not raw_query or _ALREADY_CANONICAL.fullmatch(raw_query):
        return raw_query
    return _reencode(raw_query)


def _reencode(raw_query: str) -> str:
    # aiohttp hands over the target as str; surrogateescape recovers bytes that were not UTF-8.
    data = raw_query.encode("utf-8", "surrogateescape")
    out: list[str] = []
    for pair in data.split(b"&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        if _FORBIDDEN_RAW.search(pair):
            raise InvalidRequest(
                f"Raw control character in query parameter {_shown_name(raw_key)}",
                "Percent-encode control characters in the query string.",
            )
        key = _percent_decode(raw_key, raw_key)
        value = _percent_decode(raw_value, raw_key)
        out.append(f"{quote_from_bytes(key, '-_.~')}={quote_from_bytes(value, '-_.~')}")
    return "&".join(out)


def _percent_decode(component: bytes, raw_key: bytes) -> bytes:
    """Decode `+` and `%XX` in one query component; `raw_key` only names it in errors."""
    chunks = component.replace(b"+", b" ").split(b"%")
    decoded = bytearray(chunks[0])
    for chunk in chunks[1:]:
        if len(chunk) < 2 or chunk[0] not in _HEX_DIGITS or chunk[1] not in _HEX_DIGITS:
            # The parameter's name only: values may be tokens (NextToken, RDTs).
            raise InvalidRequest(
                f"Malformed percent-escape in query parameter {_shown_name(raw_key)}",
                "A '%' in a query must be followed by two hex digits; send a literal '%' as %25.",
            )
        decoded.append(int(chunk[:2], 16))
        decoded += chunk[2:]
    return bytes(decoded)


def _shown_name(raw_key: bytes) -> str:
    """The parameter name as sent, safe to put in a message or a log line."""
    text = raw_key.decode("utf-8", "replace")
    printable = "".join(c if c.isprintable() else "?" for c in text[:_MAX_NAME_SHOWN])
    suffix = "…" if len(text) > _MAX_NAME_SHOWN else ""
    return f"'{printable}{suffix}'"
