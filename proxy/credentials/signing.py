"""SigV4 signing for SP-API (`execute-api`): request parts + frozen credentials → Authorization.

Pure computation, no I/O and no logger: the canonical request holds token values, so nothing
here may ever print it (botocore's DEBUG log does, docs/sp-api-facts.md §10). The only state is
a small cache of derived signing keys, which change once a day per secret key.

Hand-written rather than botocore's SigV4Auth (~60 µs a request, most of it in AWSRequest and
HTTPHeaders plumbing); the result is byte-for-byte botocore's, which the tests check
differentially. Canonical forms follow botocore for non-S3 services:
- URI: `quote(remove_dot_segments(raw_path), safe="/~")`, so `/MY%20SKU` signs as `/MY%2520SKU`;
- query: the already-encoded string from `proxy.forwarding.query.encode_query`, pairs sorted by
  (key, value), `k` canonicalised as `k=`;
- headers: exactly those passed, names lowercased, values trimmed with inner whitespace runs
  collapsed to one space.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final, NamedTuple
from urllib.parse import quote

from proxy.credentials.types import AwsCredentials
from proxy.secret import Secret

EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

_ALGORITHM: Final = "AWS4-HMAC-SHA256"
# Enough for yesterday's and today's key of two secrets (an STS rotation around midnight).
_KEY_CACHE_SIZE: Final = 8
# Non-empty segments of unreserved characters that are not "." or "..": remove_dot_segments
# and quote() both leave such a path unchanged, so it is its own canonical form (hot path).
_CANONICAL_PATH: Final = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9\-._~]+)+/?|/")


def amz_date(now: float) -> str:
    """Epoch seconds → SigV4 timestamp `YYYYMMDDTHHMMSSZ` (UTC)."""
    return _amz_date_of_second(int(now))


@functools.lru_cache(maxsize=4)
def _amz_date_of_second(second: int) -> str:
    # Every request in the same second shares one strftime.
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))


class OutgoingRequest(NamedTuple):
    """What goes upstream, fixed once per client request (a replay reuses it as is)."""

    method: str
    raw_path: str
    query: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]  # the client's, less the ones the proxy owns


class RequestSigner:
    """The headers the proxy owns on every request to SP-API: Host, the access token in each
    header that carries it, and, given AWS credentials, the SigV4 date, session token and
    signature. Shared by forwarded requests and the proxy's own RDT fetches."""

    __slots__ = ("_clock", "_host", "_sigv4", "_token_headers")

    def __init__(
        self,
        host: str,
        token_headers: Iterable[str],
        region: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host = host
        self._token_headers = tuple(token_headers)
        self._sigv4 = None if region is None else SigV4Signer(region)
        self._clock = clock

    def headers(
        self, outgoing: OutgoingRequest, token: Secret, aws: AwsCredentials | None
    ) -> list[tuple[str, str]]:
        """All of the request's headers, the client's first, ready to send."""
        owned: dict[str, str] = {"host": self._host}
        for name in self._token_headers:
            owned[name] = token.reveal()
        if self._sigv4 is not None and aws is not None:
            owned["x-amz-date"] = amz_date(self._clock())
            if aws.session_token:
                owned["x-amz-security-token"] = aws.session_token.reveal()
            body = outgoing.body or b""
            payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
            owned["authorization"] = self._sigv4.authorization(
                method=outgoing.method,
                raw_path=outgoing.raw_path,
                query=outgoing.query,
                headers=owned,
                payload_sha256=payload_hash,
                credentials=aws,
                amz_date=owned["x-amz-date"],
            )
        # The client's copies of these were dropped when the request was prepared.
        headers = [*outgoing.headers, *owned.items()]
        if outgoing.body is not None:
            headers.append(("Content-Length", str(len(outgoing.body))))
        return headers


class SigV4Signer:
    """Computes SigV4 Authorization headers for one region and service."""

    __slots__ = ("_keys", "_region", "_service")

    def __init__(self, region: str, service: str = "execute-api") -> None:
        self._region = region
        self._service = service
        # (secret key, date) → (signing key, credential scope); region and service are fixed
        # per signer, so together this is the (secret, date, region, service) cache.
        self._keys: dict[tuple[Secret, str], tuple[_HmacSha256, str]] = {}

    def authorization(
        self,
        *,
        method: str,
        raw_path: str,
        query: str,
        headers: Mapping[str, str],
        payload_sha256: str,
        credentials: AwsCredentials,
        amz_date: str,
    ) -> str:
        """Return the `Authorization` header value signing exactly these parts.

        `headers` are exactly the headers to sign (lowercase names); `query` is the string sent,
        as produced by encode_query; `raw_path` is the path as sent, never decoded.
        """
        canonical_headers, signed_headers = _canonical_headers(headers)
        canonical_request = (
            f"{method.upper()}\n{_canonical_uri(raw_path)}\n{_canonical_query(query)}\n"
            f"{canonical_headers}\n{signed_headers}\n{payload_sha256}"
        )
        key, scope = self._signing_key(credentials.secret_access_key, amz_date[:8])
        request_digest = hashlib.sha256(_utf8(canonical_request)).hexdigest()
        string_to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n{request_digest}"
        signature = key.hexdigest(string_to_sign.encode())
        return (
            f"{_ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )

    def _signing_key(self, secret: Secret, date: str) -> tuple[_HmacSha256, str]:
        """The derived key for `date` (YYYYMMDD) and its credential scope, cached."""
        cache_key = (secret, date)
        cached = self._keys.get(cache_key)
        if cached is not None:
            return cached
        key = _utf8("AWS4" + secret.reveal())
        for part in (date, self._region, self._service, "aws4_request"):
            key = hmac.digest(key, part.encode("utf-8"), "sha256")
        entry = (_HmacSha256(key), f"{date}/{self._region}/{self._service}/aws4_request")
        if len(self._keys) >= _KEY_CACHE_SIZE:
            del self._keys[next(iter(self._keys))]  # oldest first: dicts keep insertion order
        self._keys[cache_key] = entry
        return entry


# RFC 2104's inner and outer pads as translation tables, as the stdlib's hmac module has them.
_IPAD: Final = bytes(byte ^ 0x36 for byte in range(256))
_OPAD: Final = bytes(byte ^ 0x5C for byte in range(256))
_SHA256_BLOCK: Final = 64


class _HmacSha256:
    """HMAC-SHA256 under one key, its padded inner and outer hash states computed once.

    The signing key lives a day, so each request only continues two SHA-256 states:
    ~0.65 µs against ~1.6 µs for `hmac.digest`, which sets OpenSSL's HMAC up every call.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _canonical_uri(raw_path: str) -> str:
    if _CANONICAL_PATH.fullmatch(raw_path):
        return raw_path
    # The raw path is percent-encoded once more, as AWS does for non-S3 services.
    # surrogateescape: bytes aiohttp could not decode as UTF-8 are signed as the bytes sent.
    path = _remove_dot_segments(raw_path).encode("utf-8", "surrogateescape")
    return quote(path, safe="/~")


def _remove_dot_segments(path: str) -> str:
    """botocore.utils.normalize_url_path: RFC 3986 §5.2.4, plus empty segments removed."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and segments else ""
    return first + "/".join(segments) + last


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    if "&" not in query:
        return query if "=" in query else query + "="
    # Sort (key, value) tuples, not "k=v" strings: "a-b=1" < "a=1" as strings but not as keys.
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join([f"{key}={value}" for key, value in pairs])


def _canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical header lines, each ending in a newline; the SignedHeaders list)."""
    items = sorted((name.lower(), " ".join(value.split())) for name, value in headers.items())
    lines = "".join([f"{name}:{value}\n" for name, value in items])
    return lines, ";".join([name for name, _ in items])


def _utf8(text: str) -> bytes:
    """Encode text that may hold a secret without letting a secret reach an exception.

    A UnicodeEncodeError quotes the offending character and keeps the whole string in
    `.object`; it is replaced by one that holds neither, raised outside the except block so
    not even `__context__` refers to it.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    raise ValueError("SigV4: the secret key or a signed header value is not encodable as UTF-8")
