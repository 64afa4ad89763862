"""Wiring: `create_app(settings)` builds the proxy's aiohttp application."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

from aiohttp import web

from proxy.errors import (
    InvalidRequest,
    ProxyError,
    ProxyNotFound,
    ProxyUnauthorized,
    RequestTooLarge,
)
from proxy.forward import not_a_path
from proxy.headers import PROFILE_HEADER
from proxy.metrics import ProxyMetrics
from proxy.operations import OperationIndex
from proxy.profiles import ProfileRuntime, running_profile
from proxy.redact import Redactor
from proxy.settings import DEFAULT_PROFILE, Settings

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("proxy.access")

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", ProxyMetrics)
REDACTOR = web.AppKey("redactor", Redactor)
PROFILES = web.AppKey("profiles", dict[str, ProfileRuntime])

# Probes must work without the client key: container health checks can't hold a secret.
OPEN_ENDPOINTS = frozenset({"/_proxy/health", "/_proxy/ready"})
READY_TIMEOUT_S = 5.0
CLIENT_GONE = 499  # nginx's convention for a client that closed before the answer
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    redactor: Redactor | None = None,
) -> web.Application:
    # The key check is a middleware only when a key is configured: one layer less per request.
    middlewares = (
        [answer_and_log, check_client_key] if settings.listen.auth_token else [answer_and_log]
    )
    app = web.Application(middlewares=middlewares)
    app[SETTINGS] = settings
    app[METRICS] = ProxyMetrics()
    app[REDACTOR] = redactor or Redactor()
    register_config_secrets(app[REDACTOR], settings)
    app.cleanup_ctx.append(lambda app: run_profiles(app, clock))
    app.router.add_get("/_proxy/health", health)
    app.router.add_get("/_proxy/ready", ready)
    app.router.add_get("/_proxy/metrics", metrics)
    app.router.add_route("*", "/_proxy/{tail:.*}", unknown_own_path)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def run_profiles(app: web.Application, clock: Callable[[], float]) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    operations = OperationIndex()
    async with AsyncExitStack() as stack:
        runtimes = {}
        for name, profile in settings.all_profiles.items():
            runtimes[name] = await stack.enter_async_context(
                running_profile(
                    profile, settings, operations, app[METRICS], clock, app[REDACTOR].add
                )
            )
        app[PROFILES] = runtimes
        yield


def register_config_secrets(redactor: Redactor, settings: Settings) -> None:
    secrets = [settings.listen.auth_token]
    for profile in settings.all_profiles.values():
        secrets += [profile.lwa.client_secret, profile.lwa.refresh_token]
        if profile.aws is not None:
            secrets.append(profile.aws.secret_access_key)
    for secret in secrets:
        if secret:
            redactor.add(secret.reveal(), configured=True)


@web.middleware
async def answer_and_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns the proxy's own errors into SP-API-shaped answers and writes the access line."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ProxyError as error:
        logger.warning("%s %s: %s", error.code, request.path, error.message)
        request.app[METRICS].errors.labels(error.code).inc()
        response = error_response(error)
        if isinstance(error, RequestTooLarge):
            # Don't let aiohttp read and discard the rest of a huge body to keep the connection.
            response.force_close()
    except web.HTTPException as http_error:  # the router's 404/405, in SP-API's shape too
        response = error_response(router_error(request, http_error))
    except (ConnectionResetError, asyncio.CancelledError):
        log_access(request, CLIENT_GONE, started, None)
        raise
    except Exception:
        logger.exception("Unexpected failure handling %s %s", request.method, request.path)
        response = error_response(ProxyError("The proxy failed unexpectedly; its log has details."))
    log_access(request, response.status, started, response.headers.get("x-amzn-RequestId"))
    return response


def log_access(request: web.Request, status: int, started: float, request_id: str | None) -> None:
    request.app[METRICS].count_request(request.method, status)
    elapsed_ms = (time.perf_counter() - started) * 1000
    access_logger.info(
        "%s %s %d %.1fms %s", request.method, request.path, status, elapsed_ms, request_id or "-"
    )


@web.middleware
async def check_client_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[SETTINGS].listen.auth_token
    if expected and request.path not in OPEN_ENDPOINTS:
        sent = request.headers.getall("x-spapi-proxy-key", [])
        # Exactly one copy, equal in constant time: two copies are ambiguous, so refused.
        if len(sent) != 1 or not hmac.compare_digest(sent[0].encode(), expected.reveal().encode()):
            raise ProxyUnauthorized(
                "Missing or wrong x-spapi-proxy-key header.",
                "This proxy requires a client key (listen.auth_token); "
                "send it in x-spapi-proxy-key.",
            )
    return await handler(request)


def router_error(request: web.Request, http_error: web.HTTPException) -> ProxyError:
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


async def forward(request: web.Request) -> web.StreamResponse:
    return await profile_for(request).forwarder.handle(request)


def profile_for(request: web.Request) -> ProfileRuntime:
    profiles = request.app[PROFILES]
    name = request.headers.get(PROFILE_HEADER, DEFAULT_PROFILE)
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
