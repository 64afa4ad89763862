"""Prometheus metrics for one proxy app (its own registry, so apps in one process don't mix)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

MAX_CACHED_CHILDREN = 256  # (method, status) pairs; client-chosen methods can't grow it further
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Upstream answers take from a few ms (loopback) to tens of seconds (reports).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "spapi_proxy_requests",
            "Requests answered by the proxy, by method and status.",
            ["method", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "spapi_proxy_errors",
            "Errors the proxy itself answered, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "spapi_proxy_upstream_latency_seconds",
            "Time from sending a request upstream to its response headers.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.credential_refreshes = Counter(
            "spapi_proxy_credential_refreshes",
            "Credential fetches that succeeded, by source.",
            ["source"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, int], Any] = {}
        self.credential_failures = Counter(
            "spapi_proxy_credential_refresh_failures",
            "Credential fetches that failed, by source.",
            ["source"],
            registry=self.registry,
        )

    def count_request(self, method: str, status: int) -> None:
        # The labelled child is looked up once per (method, status), not on every request.
        child = self._request_children.get((method, status))
        if child is None:
            # Methods are client-chosen strings: bound the label's values.
            label = method if method in KNOWN_METHODS else "OTHER"
            child = self.requests.labels(label, str(status))
            if len(self._request_children) < MAX_CACHED_CHILDREN:
                self._request_children[(method, status)] = child
        child.inc()

    def count_refresh(self, source: str, ok: bool) -> None:
        (self.credential_refreshes if ok else self.credential_failures).labels(source).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
