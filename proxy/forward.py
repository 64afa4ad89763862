"""Forwarding: build the signed upstream request from the client's, stream the answer back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from proxy.credentials.store import CredentialStore
from proxy.credentials.types import AwsCredentials
from proxy.errors import InvalidRequest, RequestTooLarge, UpstreamTimeout, UpstreamUnreachable
from proxy.headers import (
    combined_user_agent,
    request_headers_to_forward,
    response_headers_to_return,
)
from proxy.metrics import ProxyMetrics
from proxy.query import encode_query
from proxy.secret import Secret
from proxy.settings import Settings
from proxy.signing import EMPTY_SHA256, SigV4Signer, amz_date

logger = logging.getLogger(__name__)

BODYLESS_METHODS = frozenset({"GET", "HEAD"})
# SP-API's 401/403 `details` that mean "fetch a new token and try again" (FACTS.md §1).
REJECTED_TOKEN_DETAILS = (
    "access token you provided has expired",
    "access token you provided is revoked, malformed or invalid",
)
MAX_ERROR_BODY_INSPECTED = 64 * 1024


@dataclass(frozen=True)
class OutgoingRequest:
    """What goes upstream, fixed once per client request (a replay reuses it as is)."""

    method: str
    raw_path: str
    query: str
    body: bytes | None
    headers: CIMultiDict[str]


class Forwarder:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        credentials: CredentialStore,
        metrics: ProxyMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        upstream = settings.upstream
        self._base_url = upstream.base_url
        self._host = urlsplit(self._base_url).netloc
        self._user_agent = upstream.effective_user_agent
        self._timeout_s = upstream.timeout_s
        self._max_body = settings.listen.max_body_bytes
        self._token_headers = settings.lwa.token_headers
        self._session = session
        self._credentials = credentials
        self._metrics = metrics
        self._signer = SigV4Signer(upstream.signing_region) if settings.aws else None
        self._clock = clock

    async def handle(self, request: web.Request) -> web.StreamResponse:
        outgoing = await self._outgoing(request)
        token = await self._credentials.lwa_token()
        upstream = await self._send(outgoing, token)
        head = b""
        if upstream.status in (401, 403):
            # Amazon refused the token before acting on the request, so a replay with a
            # new token is safe for any method (PRODUCT.md "Tokens").
            head = await read_head(upstream)
            if upstream.content.at_eof() and token_was_rejected(head):
                logger.info("SP-API rejected the access token; fetching a new one and retrying")
                upstream.release()
                self._credentials.token_rejected(token)
                upstream = await self._send(outgoing, await self._credentials.lwa_token())
                head = b""
        return await stream_back(request, upstream, head)

    async def _outgoing(self, request: web.Request) -> OutgoingRequest:
        raw_path, _, raw_query = request.raw_path.partition("?")
        check_path(raw_path)
        method = request.method
        body = None if method in BODYLESS_METHODS else await read_body(request, self._max_body)
        headers = request_headers_to_forward(request.headers.items())
        headers["User-Agent"] = combined_user_agent(
            request.headers.get("User-Agent"), self._user_agent
        )
        return OutgoingRequest(method, raw_path, encode_query(raw_query), body, headers)

    def _signed_headers(
        self, outgoing: OutgoingRequest, token: Secret, aws: AwsCredentials | None
    ) -> CIMultiDict[str]:
        headers = outgoing.headers.copy()
        owned: dict[str, str] = {"host": self._host}
        for name in self._token_headers:
            owned[name] = token.reveal()
        if self._signer is not None and aws is not None:
            owned["x-amz-date"] = amz_date(self._clock())
            if aws.session_token:
                owned["x-amz-security-token"] = aws.session_token.reveal()
            body = outgoing.body or b""
            payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
            owned["authorization"] = self._signer.authorization(
                method=outgoing.method,
                raw_path=outgoing.raw_path,
                query=outgoing.query,
                headers=owned,
                payload_sha256=payload_hash,
                credentials=aws,
                amz_date=owned["x-amz-date"],
            )
        for name, value in owned.items():
            headers[name] = value
        if outgoing.body is not None:
            headers["Content-Length"] = str(len(outgoing.body))
        return headers

    async def _send(self, outgoing: OutgoingRequest, token: Secret) -> aiohttp.ClientResponse:
        aws = await self._credentials.aws_credentials()
        headers = self._signed_headers(outgoing, token, aws)
        target = self._base_url + outgoing.raw_path
        if outgoing.query:
            target += "?" + outgoing.query
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._session.request(
                    outgoing.method,
                    URL(target, encoded=True),
                    headers=headers,
                    data=outgoing.body or None,
                    allow_redirects=False,
                    skip_auto_headers=SKIP_AUTO_HEADERS,
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"SP-API did not answer within {self._timeout_s:g} s (upstream.timeout_s).",
                "Retry later, or raise upstream.timeout_s for slow operations such as reports.",
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamUnreachable(
                f"Could not connect to SP-API at {self._base_url}: {type(error).__name__}.",
                "Check network access to the upstream (upstream.region, upstream.endpoint).",
            ) from None
        self._metrics.upstream_latency.observe(time.perf_counter() - started)
        return response


# aiohttp adds these unless told not to; the proxy forwards the client's own or none, so the
# client gets exactly the encoding it asked for (auto_decompress is off).
SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


def not_a_path() -> InvalidRequest:
    return InvalidRequest(
        "The request target must be a path such as /orders/v0/orders.",
        "The proxy always forwards to the configured upstream; absolute URLs, "
        "CONNECT and other targets are refused.",
    )


def check_path(raw_path: str) -> None:
    """Only origin-form paths without dot segments go upstream (the upstream is fixed by config)."""
    if not raw_path.startswith("/"):
        raise not_a_path()
    # Cheap test first: most SP-API paths hold no dot at all.
    if "." in raw_path or "%2e" in raw_path.lower():
        for segment in raw_path.split("/"):
            if unquote(segment) in (".", ".."):
                raise InvalidRequest(
                    "The path holds a '.' or '..' segment.",
                    "Send the resolved path; the proxy does not rewrite paths it signs.",
                )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than {limit} bytes (listen.max_body_bytes).",
        "Send a smaller body, or raise listen.max_body_bytes.",
    )


async def read_head(upstream: aiohttp.ClientResponse) -> bytes:
    """The body's first bytes (all of an SP-API error body); the rest stays unread."""
    parts: list[bytes] = []
    size = 0
    while size < MAX_ERROR_BODY_INSPECTED and not upstream.content.at_eof():
        part = await upstream.content.read(MAX_ERROR_BODY_INSPECTED - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def token_was_rejected(body: bytes) -> bool:
    try:
        document = json.loads(body)
        details = " ".join(str(error.get("details", "")) for error in document["errors"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    details = details.lower()
    return any(phrase in details for phrase in REJECTED_TOKEN_DETAILS)


async def stream_back(
    request: web.Request, upstream: aiohttp.ClientResponse, head: bytes = b""
) -> web.StreamResponse:
    """Status, headers and body back to the client; `head` is body already read."""
    try:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=response_headers_to_return(upstream.headers.items()),
        )
        await response.prepare(request)
        try:
            if head:
                await response.write(head)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as error:
            # The status line is gone already; the only honest signal left is to cut the
            # connection so the client sees a truncated body rather than a short, "complete" one.
            logger.warning(
                "response stream broke off (%s); closing the connection", type(error).__name__
            )
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
    finally:
        upstream.release()
