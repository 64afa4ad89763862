"""The proxy's own endpoints under /_proxy/: health (liveness), ready (every profile's
credentials can be had) and metrics (Prometheus text). The front door routes to them; each
takes the app and gives an answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from proxy.server.answers import Answer
from proxy.server.app import ProxyApp

READY_TIMEOUT_S = 5.0
JSON = ("Content-Type", "application/json")
METRICS_TYPE = ("Content-Type", "text/plain; version=0.0.4; charset=utf-8")

OwnEndpoint = Callable[[ProxyApp], Awaitable[Answer]]


def json_answer(document: object, status: int = 200) -> Answer:
    return Answer(status, None, [JSON], json.dumps(document).encode())


async def health(app: ProxyApp) -> Answer:
    return json_answer({"status": "ok"})


async def ready(app: ProxyApp) -> Answer:
    problems: list[str] = []
    shared: dict[str, str] = {}
    if app.fleet is not None:
        from proxy.fleet.runtime import DEGRADED  # loaded with the fleet (see app.running)
        from proxy.fleet.store import OnError

        # Degraded with on_error local still serves (200); with refuse every request gets 503,
        # so the replica is not ready.
        status = shared["shared_state"] = await app.fleet.status()
        if status == DEGRADED and app.fleet.state.on_error is OnError.REFUSE:
            problems.append("shared_state: Redis unavailable and on_error is refuse")
    for runtime in app.profiles.values():
        problems += await runtime.credentials.readiness(READY_TIMEOUT_S)
    if problems:
        return json_answer({"status": "not ready", "reasons": problems, **shared}, status=503)
    return json_answer({"status": "ready", **shared})


async def metrics(app: ProxyApp) -> Answer:
    workers = app.worker_metrics
    siblings = [] if workers is None else await workers.siblings()
    return Answer(200, None, [METRICS_TYPE], app.metrics.render(siblings))


OWN_ENDPOINTS: dict[str, OwnEndpoint] = {
    "/_proxy/health": health,
    "/_proxy/ready": ready,
    "/_proxy/metrics": metrics,
}
# Probes must work without the client key: container health checks can't hold a secret.
OPEN_ENDPOINTS = frozenset({"/_proxy/health", "/_proxy/ready"})
