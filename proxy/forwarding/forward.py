"""Forwarding one client request: prepare it, wait for its quota, take one snapshot of what it
is sent with (token, AWS credentials), have it signed and sent, and stream SP-API's reply back
(replaying once, with a new snapshot, when SP-API rejects the token)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Hashable
from urllib.parse import unquote

from aiohttp import HttpVersion11, web

from proxy.config.settings import RateLimitSettings
from proxy.credentials.signing import OutgoingRequest
from proxy.errors import (
    InvalidRequest,
    QuotaExceeded,
    RequestTooLarge,
    UnsupportedExpectation,
    UpstreamUnreachable,
)
from proxy.forwarding.diagnosis import (
    BODY_HEAD_BYTES,
    DIAGNOSED_STATUSES,
    HINT_HEADER,
    Exchange,
    client_token_header_of,
    decoded_head,
    hint_for,
)
from proxy.forwarding.headers import (
    DROPPED_FROM_RESPONSE,
    combined_user_agent,
    request_headers_to_forward,
    response_headers_to_return,
)
from proxy.forwarding.operations import Operation, OperationIndex
from proxy.forwarding.query import encode_query
from proxy.forwarding.ratelimit import (
    MAX_LIMIT_PER_S,
    MIN_LIMIT_PER_S,
    RateLimiter,
    SharedQuota,
    backoff_delay,
)
from proxy.forwarding.tokens import AccessTokens, Snapshot, Wanted, wanted_from
from proxy.forwarding.upstream import Upstream
from proxy.http import UpstreamHttpError, UpstreamResponse
from proxy.observability.access import AccessFacts
from proxy.observability.metrics import UNKNOWN
from proxy.observability.request_ids import REQUEST_ID_HEADER
from proxy.server.answers import BODYLESS_STATUSES, Answer

logger = logging.getLogger(__name__)

BODYLESS_METHODS = frozenset({"GET", "HEAD"})
AMAZON_REQUEST_ID = "x-amzn-RequestId"
EXPECT = "Expect"
# SP-API's 401/403 `details` that mean "fetch a new token and try again"
# (docs/sp-api-facts.md §1).
REJECTED_TOKEN_DETAILS = (
    "access token you provided has expired",
    "access token you provided is revoked, malformed or invalid",
)
# The official SDKs' 429 backoff: 1 s x 2^n plus jitter (docs/sp-api-facts.md §7).
RETRY_BASE_S = 1.0

RATE_LIMIT_HEADER = "x-amzn-RateLimit-Limit"

Sleep = Callable[[float], Awaitable[None]]


class Forwarder:
    """Forwards requests for one profile."""

    def __init__(
        self,
        upstream: Upstream,
        access: AccessTokens,
        operations: OperationIndex,
        limiter: RateLimiter | None,
        rate_limits: RateLimitSettings,
        max_body_bytes: int,
        sleep: Sleep = asyncio.sleep,
        shared_quota: SharedQuota | None = None,
    ) -> None:
        self._upstream = upstream
        self._metrics = upstream.metrics
        self._profile = upstream.profile_name
        self._access = access
        self._operations = operations
        self._limiter = limiter
        # The fleet's buckets (shared_state), asked instead of `limiter`, which they fall back on.
        self._shared = shared_quota
        self._rate_limits = rate_limits
        self._max_body = max_body_bytes
        # Injected like the clock, so tests of waits and backoff need not wait.
        self._sleep = sleep

    @property
    def upstream(self) -> Upstream:
        return self._upstream

    async def handle(self, request: web.BaseRequest, facts: AccessFacts) -> Answer:
        """Forward `request`; its request id (in `facts`) goes upstream and back to the client
        with it, and what the access line says about it is noted in `facts` as it is learnt."""
        outgoing = await self._outgoing(request, facts.request_id)
        op = self._operations.match(outgoing.method, outgoing.raw_path)
        facts.operation = label_of(op)
        sent, reply, head = await self._send(outgoing, op, wanted_from(request.headers))
        facts.token_kind = sent.token_kind
        if self._shared is None:
            self._observe_rate_limit(sent, reply)
        else:
            await self._observe_shared_limit(sent, reply, self._shared)
        hint = None
        if needs_diagnosis(reply):
            head = head or await read_head(reply)
            hint = hint_for(exchange_of(request, outgoing, sent, reply, head))
            if hint:
                logger.warning("SP-API answered %d: %s", reply.status, hint)
        return await stream_back(request, reply, head, facts, hint)

    async def _send(
        self, outgoing: OutgoingRequest, op: Operation | None, wanted: Wanted
    ) -> tuple[Snapshot, UpstreamResponse, bytes]:
        """Send with the right token; once more with a new one if SP-API rejects it.

        Returns what the request was sent with, SP-API's reply, and the part of its body
        already read.
        """
        bucket = None if self._limiter is None else quota_key(op)
        sent, reply = await self._send_within_quota(outgoing, op, bucket, wanted)
        if reply.status not in (401, 403):
            return sent, reply, b""
        # Amazon refused the token before acting on the request, so a replay with a new
        # token is safe for any method.
        head = await read_head(reply)
        rejected = reply.content.at_eof() and token_was_rejected(
            decoded_head(head, reply.headers.get("Content-Encoding", ""))
        )
        if not (rejected and self._access.rejected(sent)):
            return sent, reply, head
        logger.info(
            "SP-API rejected the %s token; fetching a new one and retrying", sent.token_kind
        )
        self._metrics.count_retry("token_rejected")
        reply.release()
        sent, reply = await self._send_within_quota(outgoing, op, bucket, wanted)
        return sent, reply, b""

    async def _outgoing(self, request: web.BaseRequest, request_id: str) -> OutgoingRequest:
        raw_path, _, raw_query = request.raw_path.partition("?")
        check_path(raw_path)
        method = request.method
        body = None if method in BODYLESS_METHODS else await read_body(request, self._max_body)
        client = request.headers
        headers = request_headers_to_forward(client)
        headers.append(
            ("User-Agent", combined_user_agent(client.get("User-Agent"), self._upstream.user_agent))
        )
        headers.append((REQUEST_ID_HEADER, request_id))
        return OutgoingRequest(method, raw_path, encode_query(raw_query), body, tuple(headers))

    async def _send_within_quota(
        self, outgoing: OutgoingRequest, op: Operation | None, bucket: Hashable, wanted: Wanted
    ) -> tuple[Snapshot, UpstreamResponse]:
        """Send once the operation's bucket allows; retry Amazon's 429 with backoff.

        Each attempt's token and AWS credentials are taken after its wait, so a wait never
        outlives them.
        """
        settings = self._rate_limits
        retrying = settings.enabled and outgoing.method in settings.retry_methods
        retries = settings.retries if retrying else 0
        for attempt in range(retries + 1):
            if self._shared is not None:
                await self._take_shared_quota(op, bucket, self._shared)
            elif self._limiter is not None:
                await self._take_quota(op, bucket, self._limiter)
            sent = await self._access.snapshot(
                op, bucket, outgoing.method, outgoing.raw_path, wanted
            )
            reply = await self._upstream.send(outgoing, sent)
            if reply.status != 429:
                return sent, reply
            self._metrics.count_quota_rejection(label_of(op), self._profile, "amazon")
            delay = backoff_delay(attempt, RETRY_BASE_S)
            if self._shared is not None:
                # Amazon's bucket is empty for every replica, not only for this one.
                await self._shared.throttled(op, delay)
            if attempt == retries:
                return sent, reply
            reply.release()
            self._metrics.count_retry("throttled")
            logger.info(
                "SP-API answered 429; retry %d of %d in %.1f s", attempt + 1, retries, delay
            )
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _take_quota(
        self, op: Operation | None, bucket: Hashable, limiter: RateLimiter
    ) -> None:
        wait = limiter.reserve(bucket, op, self._rate_limits.max_wait_s)
        if wait is None:
            self._metrics.count_quota_rejection(label_of(op), self._profile, "local")
            raise quota_exceeded(op, limiter.retry_after(bucket), self._rate_limits.max_wait_s)
        if wait > 0:
            self._metrics.count_quota_wait(label_of(op), self._profile)
            await self._sleep(wait)

    async def _take_shared_quota(
        self, op: Operation | None, bucket: Hashable, shared: SharedQuota
    ) -> None:
        max_wait_s = self._rate_limits.max_wait_s
        taken, seconds = await shared.reserve(op, bucket, max_wait_s)
        if not taken:
            self._metrics.count_quota_rejection(label_of(op), self._profile, "local")
            raise quota_exceeded(op, seconds, max_wait_s)
        if seconds > 0:
            self._metrics.count_quota_wait(label_of(op), self._profile)
            await self._sleep(seconds)

    def _observe_rate_limit(self, sent: Snapshot, reply: UpstreamResponse) -> None:
        if self._limiter is None:
            return
        limit = reply.headers.get(RATE_LIMIT_HEADER)
        if limit and self._limiter.observe_limit(sent.bucket, limit):
            unusable_rate_limit(limit, sent.op)

    async def _observe_shared_limit(
        self, sent: Snapshot, reply: UpstreamResponse, shared: SharedQuota
    ) -> None:
        limit = reply.headers.get(RATE_LIMIT_HEADER)
        if limit and await shared.observe_limit(sent.op, sent.bucket, limit):
            unusable_rate_limit(limit, sent.op)


def label_of(op: Operation | None) -> str:
    """The operation's name in logs and metrics: its operationId, or `unknown`."""
    return UNKNOWN if op is None else op.name


def unusable_rate_limit(limit: str, op: Operation | None) -> None:
    # Said once per operation: the same bad value usually comes on every reply.
    logger.warning(
        "Ignoring %s %r from SP-API for %s: not a rate from %g to %g requests/s; "
        "the operation keeps its current limit",
        RATE_LIMIT_HEADER,
        limit[:32],
        operation_name(op),
        MIN_LIMIT_PER_S,
        MAX_LIMIT_PER_S,
    )


def needs_diagnosis(reply: UpstreamResponse) -> bool:
    """Amazon's 401/403, and a 400 that came as an HTML page from its edge
    (docs/sp-api-facts.md §8)."""
    if reply.status == 400:
        return "html" in reply.headers.get("Content-Type", "").lower()
    return reply.status in DIAGNOSED_STATUSES


def exchange_of(
    request: web.BaseRequest,
    outgoing: OutgoingRequest,
    sent: Snapshot,
    reply: UpstreamResponse,
    head: bytes,
) -> Exchange:
    op = sent.op
    return Exchange(
        method=outgoing.method,
        path=outgoing.raw_path,
        client_sent_body=request.body_exists,
        client_token_header=client_token_header_of(request.headers.keys()),
        token_kind=sent.token_kind,
        operation_restricted=op is not None and op.restricted,
        operation_grantless=op is not None and op.grantless_scope is not None,
        status=reply.status,
        content_type=reply.headers.get("Content-Type", ""),
        # The client gets the bytes as sent; the diagnosis reads them decoded (bounded).
        body_head=decoded_head(head, reply.headers.get("Content-Encoding", "")),
    )


def quota_key(op: Operation | None) -> Hashable:
    # Each profile has its own limiter, so the operation names the bucket; operation ids
    # repeat across APIs (getOrder, getShipment), hence the API too.
    return None if op is None else (op.api, op.name)


def operation_name(op: Operation | None) -> str:
    return f"{op.name} ({op.api})" if op else "an unknown operation"


def quota_exceeded(op: Operation | None, retry_after_s: float, max_wait_s: float) -> QuotaExceeded:
    name = f"{op.name} ({op.api})" if op else "This operation"
    retry_after_s = min(QuotaExceeded.MAX_RETRY_AFTER_S, retry_after_s)  # NaN gives the cap
    return QuotaExceeded(
        f"{name} is over its rate limit; waiting would take longer than "
        f"{max_wait_s:g} s (rate_limits.max_wait_s). The proxy answered instead of Amazon, so "
        "no quota was spent.",
        f"Retry after {retry_after_s:.1f} s (Retry-After), or spread the calls out.",
        retry_after_s,
    )


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


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)  # before any 100 Continue: the client never sends the body
    if EXPECT in request.headers:
        await answer_expectation(request)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def answer_expectation(request: web.BaseRequest) -> None:
    """Tell a client that waits before its body (curl does, above 1 KiB) to send it.

    aiohttp's server leaves this to the application (its router would have answered it).
    """
    if request.headers[EXPECT].lower() != "100-continue":
        raise UnsupportedExpectation(  # the client's value is not quoted back or logged
            "Unsupported Expect header.",
            "The only expectation HTTP/1.1 defines is 100-continue.",
        )
    if request.version == HttpVersion11:  # an HTTP/1.0 client doesn't wait for it
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than {limit} bytes (listen.max_body_bytes).",
        "Send a smaller body, or raise listen.max_body_bytes.",
    )


async def read_head(reply: UpstreamResponse) -> bytes:
    """The body's first bytes (all of an SP-API error body); the rest stays unread."""
    parts: list[bytes] = []
    size = 0
    while size < BODY_HEAD_BYTES and not reply.content.at_eof():
        part = await reply.content.read(BODY_HEAD_BYTES - size)
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


# A hint replaces any copy the upstream sent.
DROPPED_WITH_HINT = DROPPED_FROM_RESPONSE | {HINT_HEADER}


async def stream_back(
    request: web.BaseRequest,
    reply: UpstreamResponse,
    head: bytes,
    facts: AccessFacts,
    hint: str | None = None,
) -> Answer:
    """Status, headers and body back to the client, with the request id echoed and the
    diagnosis's `hint` if any; `head` is body already read. Amazon's request id is noted in
    `facts` for the access line.

    A small reply is read whole and returned unsent (the server writes it in one piece); a
    larger one, or one of unknown length, is streamed from here.
    """
    try:
        headers = response_headers_to_return(
            reply.headers, DROPPED_FROM_RESPONSE if hint is None else DROPPED_WITH_HINT
        )
        headers.append((REQUEST_ID_HEADER, facts.request_id))
        if hint is not None:
            headers.append((HINT_HEADER, hint))
        has_date = "Date" in reply.headers
        facts.amazon_request_id = reply.headers.get(AMAZON_REQUEST_ID)
        length = content_length(reply)
        if small_body_length(request, reply, head, length) is not None:
            return await answer_whole(reply, headers, length or 0, has_date)
        response = Answer(reply.status, reply.reason, headers, length=length, has_date=has_date)
        await response.prepare(request)
        try:
            if head:
                await response.write(head)
            async for chunk in reply.content.iter_any():
                await response.write(chunk)
        except (UpstreamHttpError, TimeoutError) as error:
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
        reply.release()


def content_length(reply: UpstreamResponse) -> int | None:
    """The reply's Content-Length (the upstream client refuses unequal duplicates and bad
    values, so one digit string or nothing is left)."""
    length = reply.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


# Answers up to this size are read whole and sent in one write with their headers: most SP-API
# answers are a few KB of JSON, and streaming them costs an extra send per request.
SMALL_BODY_BYTES = 64 * 1024


def small_body_length(
    request: web.BaseRequest, reply: UpstreamResponse, head: bytes, length: int | None
) -> int | None:
    """The length of a reply to send whole, or None to stream it."""
    if length is None or length > SMALL_BODY_BYTES or head or request.method == "HEAD":
        return None
    return None if reply.status in BODYLESS_STATUSES else length


async def answer_whole(
    reply: UpstreamResponse,
    headers: list[tuple[str, str]],
    length: int,
    has_date: bool,
) -> Answer:
    """The whole reply, sent in one write; `headers` are without Content-Length, which is set
    from the body."""
    try:
        body = await reply.content.readexactly(length)
    except (UpstreamHttpError, TimeoutError, asyncio.IncompleteReadError) as error:
        # Nothing was sent to the client yet, so the failure can still be said properly.
        raise UpstreamUnreachable(
            f"SP-API's answer broke off before its end ({type(error).__name__}).",
            "Retry the request; if it keeps happening, check the network to the upstream.",
        ) from None
    return Answer(reply.status, reply.reason, headers, body, has_date=has_date)
