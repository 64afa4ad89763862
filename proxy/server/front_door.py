"""The front door: what the HTTP server calls for every request. It checks the request line
and the client key, sends `/_proxy/` paths to the proxy's own endpoints and everything else to
its profile's forwarder, turns the proxy's errors into answers in SP-API's shape, and writes the
access line."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import cast

from aiohttp import web

from proxy.config.settings import DEFAULT_PROFILE
from proxy.errors import (
    InvalidRequest,
    MethodNotAllowed,
    ProxyError,
    ProxyNotFound,
    ProxyUnauthorized,
    RequestTooLarge,
)
from proxy.forwarding.forward import not_a_path
from proxy.forwarding.headers import PROFILE_HEADER, REFRESH_TOKEN_HEADER
from proxy.observability.access import AccessFacts
from proxy.observability.logging_setup import (
    failure_frames,
    failure_summary,
    loggable,
    write_access_line,
)
from proxy.observability.metrics import UNKNOWN
from proxy.observability.request_ids import REQUEST_ID_HEADER, request_id_of
from proxy.profiles import ProfileRuntime, client_sellers_off
from proxy.server.answers import Answer, error_answer
from proxy.server.app import ProxyApp
from proxy.server.endpoints import OPEN_ENDPOINTS, OWN_ENDPOINTS
from proxy.server.listener import ProxyConnection

logger = logging.getLogger(__name__)

OWN_PREFIX = "/_proxy/"  # never forwarded
CLIENT_KEY_HEADER = "x-spapi-proxy-key"
UNEXPECTED = ProxyError("The proxy failed unexpectedly; its log has details.")
CLIENT_GONE = 499  # nginx's convention for a client that closed before the answer


class FrontDoor:
    """What the HTTP server calls for every request: the target and version checks, the client
    key, forwarding or the proxy's own endpoints, its errors in SP-API's shape, and the access
    line. No router: a request either goes to its profile's forwarder or is one of three own
    paths, and a router's matching would cost more than both.
    """

    def __init__(self, app: ProxyApp) -> None:
        self._app = app
        self._metrics = app.metrics
        self._redactor = app.redactor
        auth_token = app.settings.listen.auth_token
        self._client_key = auth_token.reveal().encode() if auth_token else None

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        # Every connection of the proxy's server is a ProxyConnection (proxy.server.listener).
        connection = cast(ProxyConnection, request.protocol)
        connection.request_began(request)
        facts = AccessFacts(request_id_of(request.headers))
        request_id = facts.request_id
        try:
            try:
                check_request_line(request)
                if self._client_key is not None:
                    self._check_client_key(request)
                path = request.path
                if not path.startswith(OWN_PREFIX):
                    profile = request.headers.get(PROFILE_HEADER)
                    profiles = self._app.profiles
                    runtime = (
                        profiles[DEFAULT_PROFILE]
                        if profile is None
                        else profile_for(profiles, profile)
                    )
                    facts.profile = runtime.profile.name
                    sellers = runtime.sellers
                    if sellers is not None:
                        forwarder = sellers.forwarder_for(request.headers)
                    elif REFRESH_TOKEN_HEADER in request.headers:
                        raise client_sellers_off(runtime.profile)
                    else:
                        forwarder = runtime.forwarder
                    response = await forwarder.handle(request, facts)
                else:
                    response = await self._own_endpoint(request, path)
                    response.add_field(REQUEST_ID_HEADER, request_id)
            except ProxyError as error:
                logger.warning(
                    "%s %s: %s (request id %s)",
                    error.code,
                    loggable(request.path),
                    loggable(error.message),
                    request_id,
                )
                self._metrics.count_error(error.code)
                response = error_response(error, request_id)
                if isinstance(error, RequestTooLarge):
                    # Don't let aiohttp read and discard the rest of a huge body to keep the
                    # connection.
                    response.force_close()
            except (ConnectionResetError, asyncio.CancelledError):
                self._log_access(request, CLIENT_GONE, started, facts)
                raise
            except Exception as error:
                self._log_unexpected(request, error, request_id)
                response = error_response(UNEXPECTED, request_id)
            if connection.watchdog.draining:
                response.force_close()  # the client learns from `Connection: close`
            self._log_access(request, response.status, started, facts)
            return response
        finally:
            connection.request_ended()

    async def _own_endpoint(self, request: web.BaseRequest, path: str) -> Answer:
        endpoint = OWN_ENDPOINTS.get(path)
        if endpoint is None:
            raise ProxyNotFound(
                f"{path} is not one of the proxy's endpoints.",
                "The proxy's own endpoints are /_proxy/health, /_proxy/ready and "
                "/_proxy/metrics; paths under /_proxy/ are never forwarded.",
            )
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(
                f"{path} answers GET and HEAD only.", "Send the request as a GET."
            )
        return await endpoint(self._app)

    def _check_client_key(self, request: web.BaseRequest) -> None:
        if request.path in OPEN_ENDPOINTS:
            return
        sent = request.headers.getall(CLIENT_KEY_HEADER, [])
        # Exactly one copy, equal in constant time: two copies are ambiguous, so refused.
        # surrogateescape: a value that isn't UTF-8 (aiohttp keeps its bytes so) is just wrong.
        if len(sent) != 1 or not hmac.compare_digest(
            sent[0].encode("utf-8", "surrogateescape"), self._client_key or b""
        ):
            raise ProxyUnauthorized(
                f"Missing or wrong {CLIENT_KEY_HEADER} header.",
                "This proxy requires a client key (listen.auth_token); "
                f"send it in {CLIENT_KEY_HEADER}.",
            )

    def _log_unexpected(self, request: web.BaseRequest, error: Exception, request_id: str) -> None:
        logger.error(
            "Unexpected %s handling %s %s (request id %s)",
            failure_summary(error, self._redactor.scrub),
            request.method,
            loggable(request.path),
            request_id,
        )
        logger.debug("raised through:\n%s", failure_frames(error))

    def _log_access(
        self, request: web.BaseRequest, status: int, started: float, facts: AccessFacts
    ) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        path = request.path
        if not path.startswith(OWN_PREFIX):  # probes and scrapes are not the traffic
            self._metrics.count_request(
                facts.operation or UNKNOWN, request.method, status, facts.profile or UNKNOWN
            )
        write_access_line(request.method, path, status, elapsed_ms, facts)


def check_request_line(request: web.BaseRequest) -> None:
    """Only origin-form targets without a fragment, and HTTP/1.x, on every path.

    An absolute-form target (`GET http://host/...`) would otherwise reach the own endpoints by
    its path; a fragment is never part of a request target (RFC 9112 §3.2), so one is refused
    rather than guessed at; a request line without a version is HTTP/0.9, which is not spoken.
    """
    raw = request.raw_path
    if not raw.startswith("/"):  # absolute-form, CONNECT host:port, `*`
        if request.method == "CONNECT" or "://" in raw:
            raise used_as_forward_proxy(request)
        raise not_a_path()
    if "#" in raw:
        raise InvalidRequest(
            "The request target holds a fragment (#...).",
            "Fragments are for the client's own use; send the target without it.",
        )
    if request.version.major != 1:
        raise InvalidRequest(
            "Only HTTP/1.1 and HTTP/1.0 are served.",
            "Send an HTTP/1.1 request line: METHOD /path HTTP/1.1.",
        )


def used_as_forward_proxy(request: web.BaseRequest) -> InvalidRequest:
    """CONNECT and absolute URLs are what a client's proxy option (an SDK's `proxies=`,
    HTTPS_PROXY) sends: the answer names the setting that works, with this listener's address."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), sockname[1]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    else:
        address = "<this proxy's host:port>"
    return InvalidRequest(
        f"spapi-proxy is a reverse proxy: set the SDK's endpoint to http://{address} "
        "(not its proxy option); see docs/sdks.md.",
        "CONNECT and absolute URLs are what a forward-proxy setting sends; this proxy takes "
        "paths such as /orders/v0/orders and forwards them to the configured upstream.",
    )


def error_response(error: ProxyError, request_id: str) -> Answer:
    return error_answer(
        error.status,
        error.code,
        error.message,
        error.details,
        error.headers,
        request_id=request_id,
    )


def profile_for(profiles: dict[str, ProfileRuntime], name: str) -> ProfileRuntime:
    """The runtime of the profile a request named in x-spapi-profile."""
    runtime = profiles.get(name)
    if runtime is None:
        raise InvalidRequest(
            f"Unknown profile {name[:64]!r} in {PROFILE_HEADER}.",
            f"Configured profiles: {', '.join(profiles)}.",
        )
    return runtime
