"""Wiring: `create_app(settings)` builds the proxy's aiohttp application."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from aiohttp import web

from proxy.answers import WholeAnswer
from proxy.errors import (
    InvalidRequest,
    ProxyError,
    ProxyNotFound,
    ProxyUnauthorized,
    RequestTooLarge,
)
from proxy.forward import REQUEST_ID, Sleep, not_a_path
from proxy.headers import PROFILE_HEADER
from proxy.logging_setup import loggable, write_access_line
from proxy.metrics import ProxyMetrics
from proxy.operations import OperationIndex
from proxy.profiles import ProfileRuntime, running_profile
from proxy.redact import Redactor
from proxy.settings import DEFAULT_PROFILE, Settings

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", ProxyMetrics)
REDACTOR = web.AppKey("redactor", Redactor)
PROFILES = web.AppKey("profiles", dict[str, ProfileRuntime])

# Probes must work without the client key: container health checks can't hold a secret.
OPEN_ENDPOINTS = frozenset({"/_proxy/health", "/_proxy/ready"})
OWN_PREFIX = "/_proxy/"  # never forwarded
CLIENT_KEY_HEADER = "x-spapi-proxy-key"
UNEXPECTED = ProxyError("The proxy failed unexpectedly; its log has details.")
READY_TIMEOUT_S = 5.0
CLIENT_GONE = 499  # nginx's convention for a client that closed before the answer


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    redactor: Redactor | None = None,
    sleep: Sleep = asyncio.sleep,
) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[METRICS] = ProxyMetrics()
    app[REDACTOR] = redactor or Redactor()
    register_config_secrets(app[REDACTOR], settings)
    app.cleanup_ctx.append(lambda app: run_profiles(app, clock, sleep))
    app.router.add_get("/_proxy/health", health)
    app.router.add_get("/_proxy/ready", ready)
    app.router.add_get("/_proxy/metrics", metrics)
    app.router.add_route("*", "/_proxy/{tail:.*}", unknown_own_path)
    # No catch-all: the front door forwards every path; a target that is not a path (CONNECT,
    # `*`) finds no route here, and router_error answers it as InvalidInput.
    app[FRONT_DOOR] = FrontDoor(app)
    return app


async def run_profiles(
    app: web.Application, clock: Callable[[], float], sleep: Sleep = asyncio.sleep
) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    operations = OperationIndex()
    async with AsyncExitStack() as stack:
        runtimes = {}
        for name, profile in settings.all_profiles.items():
            runtimes[name] = await stack.enter_async_context(
                running_profile(
                    profile, settings, operations, app[METRICS], clock, app[REDACTOR].add, sleep
                )
            )
        app[PROFILES] = runtimes
        yield


def register_config_secrets(redactor: Redactor, settings: Settings) -> None:
    secrets = [settings.listen.auth_token]
    for profile in settings.all_profiles.values():
        secrets += [profile.lwa.client_secret, profile.lwa.refresh_token]
        if profile.aws is not None:
            secrets += [profile.aws.secret_access_key, profile.aws.session_token]
    for secret in secrets:
        if secret:
            redactor.add(secret.reveal(), configured=True)


class FrontDoor:
    """What the HTTP server calls for every request: the client key, the proxy's own errors
    in SP-API's shape, and the access line, around forwarding or the app's own endpoints.

    Forwarded requests go straight to their profile's forwarder. aiohttp's router and
    middleware chain would cost ~18 µs a request (issue 6), a tenth of the proxy's CPU, to
    pick the one catch-all route; paths under /_proxy/ and anything that is not a path still
    go through the app's router.
    """

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._settings = app[SETTINGS]
        self._metrics = app[METRICS]
        self._redactor = app[REDACTOR]
        auth_token = self._settings.listen.auth_token
        self._client_key = auth_token.reveal().encode() if auth_token else None

    def _default_runtime(self) -> ProfileRuntime:
        # The profiles exist once the app has started (run_profiles); looked up on each request
        # so a restarted app's runtimes are never stale.
        return self._app[PROFILES][DEFAULT_PROFILE]

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            if self._client_key is not None:
                self._check_client_key(request)
            path = request.path
            if path.startswith("/") and not path.startswith(OWN_PREFIX):
                profile = request.headers.get(PROFILE_HEADER)
                runtime = (
                    self._default_runtime() if profile is None else profile_for(self._app, profile)
                )
                response = await runtime.forwarder.handle(request)
            else:
                # The app's own request handler, the one aiohttp's server would have called
                # (web.Server.request_handler of an AppRunner): router, then the route.
                response = await self._app._handle(request)  # type: ignore[arg-type]
        except ProxyError as error:
            logger.warning("%s %s: %s", error.code, loggable(request.path), loggable(error.message))
            self._metrics.errors.labels(error.code).inc()
            response = error_response(error)
            if isinstance(error, RequestTooLarge):
                # Don't let aiohttp read and discard the rest of a huge body to keep the
                # connection.
                response.force_close()
        except web.HTTPException as http_error:  # the router's 404/405, in SP-API's shape too
            response = error_response(router_error(request, http_error))
        except (ConnectionResetError, asyncio.CancelledError):
            self._log_access(request, CLIENT_GONE, started, None)
            raise
        except Exception as error:
            self._log_unexpected(request, error)
            response = error_response(UNEXPECTED)
        request_id = (
            response.request_id
            if isinstance(response, WholeAnswer)
            else response.headers.get(REQUEST_ID)
        )
        self._log_access(request, response.status, started, request_id)
        return response

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
        """The failure's class, where it was raised and its message redacted; no traceback,
        whose text may quote values (a credential source's raw answer) the redactor never saw
        whole."""
        where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
        origin = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
        logger.error(
            "Unexpected %s%s handling %s %s: %s",
            type(error).__name__,
            origin,
            request.method,
            loggable(request.path),
            loggable(self._redactor.scrub(str(error))),
        )

    def _log_access(
        self, request: web.BaseRequest, status: int, started: float, request_id: str | None
    ) -> None:
        self._metrics.count_request(request.method, status)
        elapsed_ms = (time.perf_counter() - started) * 1000
        write_access_line(
            f"{request.method} {request.path} {status} {elapsed_ms:.1f}ms {request_id or '-'}"
        )


FRONT_DOOR = web.AppKey("front_door", FrontDoor)


def router_error(request: web.BaseRequest, http_error: web.HTTPException) -> ProxyError:
    if not request.raw_path.startswith("/"):  # CONNECT host:port and other non-path targets
        return not_a_path()
    error = ProxyError(http_error.reason)
    error.status, error.code = http_error.status, "InvalidInput"
    return error


def error_response(error: ProxyError) -> web.Response:
    entry = {"code": error.code, "message": error.message}
    if error.details:
        entry["details"] = error.details
    return web.Response(
        status=error.status,
        body=json.dumps({"errors": [entry]}).encode(),
        content_type="application/json",
        headers={**error.headers, "x-spapi-proxy-error": error.code},
    )


def profile_for(app: web.Application, name: str) -> ProfileRuntime:
    """The runtime of the profile a request named in x-spapi-profile."""
    profiles = app[PROFILES]
    runtime = profiles.get(name)
    if runtime is None:
        raise InvalidRequest(
            f"Unknown profile {name[:64]!r} in {PROFILE_HEADER}.",
            f"Configured profiles: {', '.join(profiles)}.",
        )
    return runtime


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    problems: list[str] = []
    for runtime in request.app[PROFILES].values():
        problems += await runtime.credentials.readiness(READY_TIMEOUT_S)
    if problems:
        return web.json_response({"status": "not ready", "reasons": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def unknown_own_path(request: web.Request) -> web.Response:
    raise ProxyNotFound(
        f"{request.path} is not one of the proxy's endpoints.",
        "The proxy's own endpoints are /_proxy/health, /_proxy/ready and /_proxy/metrics; "
        "paths under /_proxy/ are never forwarded.",
    )
