"""Prometheus metrics for one proxy app (its own registry, so apps in one process don't mix)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

# Client-chosen methods are counted as OTHER, so there are at most 8 x 900 request series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Upstream answers take from a few ms (loopback) to tens of seconds (reports).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ProxyMetrics:
    """The proxy's metrics. The two that change on every request are plain counts read at
    scrape time: prometheus_client's labelled children and histograms take a lock and several
    calls per update (~15k instructions a request together). The event loop is the
    only writer, so plain integers are safe; the rare ones use prometheus_client as is."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests: dict[tuple[str, int], int] = {}
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._latency_sum = 0.0
        self.registry.register(_PerRequestCollector(self))
        self.errors = Counter(
            "spapi_proxy_errors",
            "Errors the proxy itself answered, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.credential_refreshes = Counter(
            "spapi_proxy_credential_refreshes",
            "Credential fetches that succeeded, by source.",
            ["source"],
            registry=self.registry,
        )
        self.credential_failures = Counter(
            "spapi_proxy_credential_refresh_failures",
            "Credential fetches that failed, by source.",
            ["source"],
            registry=self.registry,
        )

    def count_request(self, method: str, status: int) -> None:
        key = (method if method in KNOWN_METHODS else "OTHER", status)
        self._requests[key] = self._requests.get(key, 0) + 1

    def observe_upstream_latency(self, seconds: float) -> None:
        self._latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def count_refresh(self, source: str, ok: bool) -> None:
        (self.credential_refreshes if ok else self.credential_failures).labels(source).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def request_series(self) -> Iterator[tuple[str, str, int]]:
        for (method, status), count in sorted(self._requests.items()):
            yield method, str(status), count

    def latency_buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (upper bound, count) pairs ending with +Inf, and the sum of the values."""
        cumulative: list[tuple[str, float]] = []
        total = 0
        bounds = (*map(str, LATENCY_BUCKETS), "+Inf")
        for bound, count in zip(bounds, self._latency_counts, strict=True):
            total += count
            cumulative.append((bound, float(total)))
        return cumulative, self._latency_sum


class _PerRequestCollector:
    """Turns ProxyMetrics' plain counts into Prometheus metric families when scraped."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "spapi_proxy_requests",
            "Requests answered by the proxy, by method and status.",
            labels=["method", "status"],
        )
        for method, status, count in self._metrics.request_series():
            requests.add_metric([method, status], count)
        yield requests
        latency = HistogramMetricFamily(
            "spapi_proxy_upstream_latency_seconds",
            "Time from sending a request upstream to its response headers.",
        )
        buckets, total = self._metrics.latency_buckets()
        latency.add_metric([], buckets, sum_value=total)
        yield latency
