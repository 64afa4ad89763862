"""Wiring: `create_app(settings)` builds the proxy's application (its profiles, metrics and
redactor); `FrontDoor` is what the HTTP server calls for every request."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import cast

from aiohttp import web

from proxy.answers import Answer, error_answer
from proxy.config.settings import DEFAULT_PROFILE, Settings
from proxy.errors import (
    InvalidRequest,
    MethodNotAllowed,
    ProxyError,
    ProxyNotFound,
    ProxyUnauthorized,
    RequestTooLarge,
)
from proxy.forward import Sleep, not_a_path
from proxy.headers import PROFILE_HEADER
from proxy.listener import ProxyConnection
from proxy.logging_setup import failure_frames, failure_summary, loggable, write_access_line
from proxy.metrics import ProxyMetrics
from proxy.operations import OperationIndex
from proxy.profiles import ProfileRuntime, running_profile
from proxy.redact import Redactor

logger = logging.getLogger(__name__)

# Probes must work without the client key: container health checks can't hold a secret.
OPEN_ENDPOINTS = frozenset({"/_proxy/health", "/_proxy/ready"})
OWN_PREFIX = "/_proxy/"  # never forwarded
CLIENT_KEY_HEADER = "x-spapi-proxy-key"
UNEXPECTED = ProxyError("The proxy failed unexpectedly; its log has details.")
READY_TIMEOUT_S = 5.0
CLIENT_GONE = 499  # nginx's convention for a client that closed before the answer
JSON = ("Content-Type", "application/json")


class ProxyApp:
    """The proxy's state: settings, metrics, the redactor, and each profile's runtime while the
    app runs (`running()`, entered by the server around its whole life)."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.metrics = ProxyMetrics()
        self.redactor = redactor or Redactor()
        register_config_secrets(self.redactor, settings)
        self._clock = clock
        self._sleep = sleep
        self._profiles: dict[str, ProfileRuntime] | None = None

    @property
    def profiles(self) -> dict[str, ProfileRuntime]:
        if self._profiles is None:
            raise RuntimeError("the app is not running")
        return self._profiles

    @property
    def is_running(self) -> bool:
        return self._profiles is not None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Each profile's credentials, connection pool and forwarder, closed on the way out."""
        operations = OperationIndex()
        async with AsyncExitStack() as stack:
            runtimes = {}
            for name, profile in self.settings.all_profiles.items():
                runtimes[name] = await stack.enter_async_context(
                    running_profile(
                        profile,
                        self.settings,
                        operations,
                        self.metrics,
                        self._clock,
                        self.redactor,
                        self._sleep,
                    )
                )
            self._profiles = runtimes
            try:
                yield
            finally:
                self._profiles = None


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    redactor: Redactor | None = None,
    sleep: Sleep = asyncio.sleep,
) -> ProxyApp:
    return ProxyApp(settings, clock, redactor, sleep)


def register_config_secrets(redactor: Redactor, settings: Settings) -> None:
    secrets = [settings.listen.auth_token]
    for profile in settings.all_profiles.values():
        secrets += [profile.lwa.client_secret, profile.lwa.refresh_token]
        if profile.aws is not None:
            secrets += [profile.aws.secret_access_key, profile.aws.session_token]
    for secret in secrets:
        if secret:
            redactor.add(secret.reveal(), configured=True)


OwnEndpoint = Callable[[ProxyApp], Awaitable[Answer]]


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
        self._own: dict[str, OwnEndpoint] = {
            "/_proxy/health": health,
            "/_proxy/ready": ready,
            "/_proxy/metrics": metrics,
        }

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        # Every connection of the proxy's server is a ProxyConnection (proxy.listener).
        connection = cast(ProxyConnection, request.protocol)
        connection.request_began(request)
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
                    response = await runtime.forwarder.handle(request)
                else:
                    response = await self._own_endpoint(request, path)
            except ProxyError as error:
                logger.warning(
                    "%s %s: %s", error.code, loggable(request.path), loggable(error.message)
                )
                self._metrics.errors.labels(error.code).inc()
                response = error_response(error)
                if isinstance(error, RequestTooLarge):
                    # Don't let aiohttp read and discard the rest of a huge body to keep the
                    # connection.
                    response.force_close()
            except (ConnectionResetError, asyncio.CancelledError):
                self._log_access(request, CLIENT_GONE, started, None)
                raise
            except Exception as error:
                self._log_unexpected(request, error)
                response = error_response(UNEXPECTED)
            if connection.watchdog.draining:
                response.force_close()  # the client learns from `Connection: close`
            # Every answer is an Answer (stream_back's and the proxy's own).
            request_id = cast(Answer, response).request_id
            self._log_access(request, response.status, started, request_id)
            return response
        finally:
            connection.request_ended()

    async def _own_endpoint(self, request: web.BaseRequest, path: str) -> Answer:
        endpoint = self._own.get(path)
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

    def _log_unexpected(self, request: web.BaseRequest, error: Exception) -> None:
        logger.error(
            "Unexpected %s handling %s %s",
            failure_summary(error, self._redactor.scrub),
            request.method,
            loggable(request.path),
        )
        logger.debug("raised through:\n%s", failure_frames(error))

    def _log_access(
        self, request: web.BaseRequest, status: int, started: float, request_id: str | None
    ) -> None:
        self._metrics.count_request(request.method, status)
        elapsed_ms = (time.perf_counter() - started) * 1000
        write_access_line(
            f"{request.method} {request.path} {status} {elapsed_ms:.1f}ms {request_id or '-'}"
        )


def check_request_line(request: web.BaseRequest) -> None:
    """Only origin-form targets without a fragment, and HTTP/1.x, on every path.

    An absolute-form target (`GET http://host/...`) would otherwise reach the own endpoints by
    its path; a fragment is never part of a request target (RFC 9112 §3.2), so one is refused
    rather than guessed at; a request line without a version is HTTP/0.9, which is not spoken.
    """
    raw = request.raw_path
    if not raw.startswith("/"):  # absolute-form, CONNECT host:port, `*`
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


def error_response(error: ProxyError) -> Answer:
    return error_answer(error.status, error.code, error.message, error.details, error.headers)


def profile_for(profiles: dict[str, ProfileRuntime], name: str) -> ProfileRuntime:
    """The runtime of the profile a request named in x-spapi-profile."""
    runtime = profiles.get(name)
    if runtime is None:
        raise InvalidRequest(
            f"Unknown profile {name[:64]!r} in {PROFILE_HEADER}.",
            f"Configured profiles: {', '.join(profiles)}.",
        )
    return runtime


def json_answer(document: object, status: int = 200) -> Answer:
    return Answer(status, None, [JSON], json.dumps(document).encode())


async def health(app: ProxyApp) -> Answer:
    return json_answer({"status": "ok"})


async def ready(app: ProxyApp) -> Answer:
    problems: list[str] = []
    for runtime in app.profiles.values():
        problems += await runtime.credentials.readiness(READY_TIMEOUT_S)
    if problems:
        return json_answer({"status": "not ready", "reasons": problems}, status=503)
    return json_answer({"status": "ready"})


async def metrics(app: ProxyApp) -> Answer:
    content_type = ("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
    return Answer(200, None, [content_type], app.metrics.render())
