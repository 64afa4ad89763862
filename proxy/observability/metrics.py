"""Prometheus metrics for one proxy app (its own registry, so apps in one process don't mix)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# A `*_created` series per counter doubles what is scraped and says nothing an operator uses.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # not annotated

# Client-chosen methods are counted as OTHER, so the method label has at most 8 values.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Upstream answers take from a few ms (loopback) to tens of seconds (reports).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The label value of an operation or profile the proxy did not learn (it answered first, or no
# operation matches the path): a client's text never becomes a label value.
UNKNOWN = "unknown"

REQUEST_LABELS = ("operation", "method", "status", "profile")
# Why a request went upstream again: Amazon's 429, a token SP-API rejected, or a kept-alive
# connection the upstream had closed.
RETRY_REASONS = ("throttled", "token_rejected", "stale_connection")

# name (without _total) -> help, label names. Every one is a plain dict of counts.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "spapi_proxy_requests": (
        "Requests answered (forwarded or refused by the proxy; not its own endpoints).",
        REQUEST_LABELS,
    ),
    "spapi_proxy_errors": ("Errors the proxy itself answered, by error code.", ("code",)),
    "spapi_proxy_credential_refreshes": (
        "Credential fetches that succeeded, by source.",
        ("source",),
    ),
    "spapi_proxy_credential_refresh_failures": (
        "Credential fetches that failed, by source.",
        ("source",),
    ),
    "spapi_proxy_quota_waits": (
        "Requests that waited for their operation's local token bucket before going upstream.",
        ("operation", "profile"),
    ),
    "spapi_proxy_quota_rejections": (
        "429s: answered by the proxy because the wait would be too long (source=local), or "
        "received from Amazon (source=amazon, retried or not).",
        ("operation", "profile", "source"),
    ),
    "spapi_proxy_retries": (
        "Requests sent upstream again, by reason (throttled, token_rejected, stale_connection).",
        ("reason",),
    ),
    "spapi_proxy_rdt_fetches": ("Restricted data tokens fetched from the Tokens API.", ()),
    "spapi_proxy_rdt_cache_hits": ("Requests served with a cached restricted data token.", ()),
}
GAUGES = {
    "spapi_proxy_inbound_connections": "Client connections open.",
    "spapi_proxy_upstream_connections": "Connections to SP-API open or being opened.",
}
LATENCY = "spapi_proxy_upstream_latency_seconds"

Labels = tuple[str, ...]
# What a worker process reports of its metrics to the one a scrape reached, JSON-ready:
# {"counters": {name: [[*labels, count], ...]}, "latency": [[*labels, [*bucket counts, sum]]],
#  "gauges": {name: value}, "process": {sample name: value}}
Snapshot = dict[str, Any]
# Process samples several workers don't add up: the earliest start, the one descriptor limit.
PROCESS_MERGED_BY = {"process_start_time_seconds": min, "process_max_fds": max}


class ProxyMetrics:
    """The proxy's metrics, as plain counts read at scrape time: prometheus_client's labelled
    children and histograms take a lock and several calls per update (~15k instructions a
    request together). The event loop is the only writer, so plain numbers are safe."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}
        retries = self.counts["spapi_proxy_retries"]
        for reason in RETRY_REASONS:
            retries[(reason,)] = 0
        self.counts["spapi_proxy_rdt_fetches"][()] = 0
        self.counts["spapi_proxy_rdt_cache_hits"][()] = 0
        # labels -> counts per bucket (the last one +Inf), then the sum of the values
        self.latency: dict[Labels, list[float]] = {}
        # Read at scrape time, set by the server and the app once they run.
        self.inbound_connections: Callable[[], int] = lambda: 0
        self.upstream_connections: Callable[[], int] = lambda: 0
        self.stale_connection_retries: Callable[[], int] = lambda: 0
        # Holds only what others register (the fleet's gauge); the proxy's own metrics are
        # rendered from a snapshot, merged with the other workers' when there are some.
        self.registry = CollectorRegistry()
        self._process = ProcessCollector(registry=None)

    def count_request(self, operation: str, method: str, status: int, profile: str) -> None:
        key = (operation, method if method in KNOWN_METHODS else "OTHER", str(status), profile)
        series = self.counts["spapi_proxy_requests"]
        series[key] = series.get(key, 0) + 1

    def observe_upstream_latency(
        self, seconds: float, operation: str, method: str, status: int, profile: str
    ) -> None:
        key = (operation, method if method in KNOWN_METHODS else "OTHER", str(status), profile)
        counts = self.latency.get(key)
        if counts is None:
            counts = self.latency[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def count(self, name: str, *labels: str) -> None:
        series = self.counts[name]
        series[labels] = series.get(labels, 0) + 1

    def count_error(self, code: str) -> None:
        self.count("spapi_proxy_errors", code)

    def count_refresh(self, source: str, ok: bool) -> None:
        name = (
            "spapi_proxy_credential_refreshes" if ok else "spapi_proxy_credential_refresh_failures"
        )
        self.count(name, source)

    def count_quota_wait(self, operation: str, profile: str) -> None:
        self.count("spapi_proxy_quota_waits", operation, profile)

    def count_quota_rejection(self, operation: str, profile: str, source: str) -> None:
        self.count("spapi_proxy_quota_rejections", operation, profile, source)

    def count_retry(self, reason: str) -> None:
        self.count("spapi_proxy_retries", reason)

    def count_rdt(self, fetched: bool) -> None:
        self.count("spapi_proxy_rdt_fetches" if fetched else "spapi_proxy_rdt_cache_hits")

    def render(self, siblings: Iterable[Snapshot] = ()) -> bytes:
        """The Prometheus text of this process's metrics, added up with `siblings`' (the other
        workers' snapshots) so that any worker a scrape reaches tells the totals."""
        snapshot = merged([self.snapshot(), *siblings])
        view = CollectorRegistry()
        view.register(_SnapshotCollector(snapshot, self._process))
        return generate_latest(view) + generate_latest(self.registry)

    def snapshot(self) -> Snapshot:
        return {
            "counters": {
                name: [[*labels, count] for labels, count in self.counter_series(name).items()]
                for name in COUNTERS
            },
            "latency": [[*labels, counts] for labels, counts in self.latency.items()],
            "gauges": self.gauge_values(),
            "process": {
                sample.name: sample.value
                for family in self._process.collect()
                for sample in family.samples
            },
        }

    def counter_series(self, name: str) -> dict[Labels, float]:
        series = self.counts[name]
        if name == "spapi_proxy_retries":
            series = dict(series)
            series[("stale_connection",)] += self.stale_connection_retries()
        return series

    def gauge_values(self) -> dict[str, float]:
        return {
            "spapi_proxy_inbound_connections": self.inbound_connections(),
            "spapi_proxy_upstream_connections": self.upstream_connections(),
        }


def merged(snapshots: list[Snapshot]) -> Snapshot:
    """One snapshot whose every count, gauge and process sample is the sum of `snapshots'`
    (the start time their earliest, the descriptor limit their largest)."""
    counters: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}
    latency: dict[Labels, list[float]] = {}
    gauges: dict[str, float] = dict.fromkeys(GAUGES, 0.0)
    process: dict[str, float] = {}
    for snapshot in snapshots:
        for name, rows in snapshot["counters"].items():
            series = counters.setdefault(name, {})
            for *labels, count in rows:
                key = tuple(labels)
                series[key] = series.get(key, 0) + count
        for *labels, counts in snapshot["latency"]:
            key = tuple(labels)
            known = latency.get(key)
            latency[key] = (
                list(counts)
                if known is None
                else [a + b for a, b in zip(known, counts, strict=True)]
            )
        for name, value in snapshot["gauges"].items():
            gauges[name] = gauges.get(name, 0.0) + value
        for name, value in snapshot["process"].items():
            combine = PROCESS_MERGED_BY.get(name)
            known_value = process.get(name)
            process[name] = (
                value
                if known_value is None
                else (combine(known_value, value) if combine else known_value + value)
            )
    return {"counters": counters, "latency": latency, "gauges": gauges, "process": process}


class _SnapshotCollector:
    """Turns a merged snapshot into Prometheus metric families."""

    def __init__(self, snapshot: Snapshot, process: ProcessCollector) -> None:
        self._snapshot = snapshot
        self._process = process  # its families' names and help; the values are the snapshot's

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        for name, (documentation, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=labels)
            for values, count in sorted(snapshot["counters"][name].items()):
                family.add_metric(values, count)
            yield family
        for name, value in snapshot["gauges"].items():
            yield GaugeMetricFamily(name, GAUGES[name], value=value)
        latency = HistogramMetricFamily(
            LATENCY,
            "Time from sending a request upstream to its response headers.",
            labels=REQUEST_LABELS,
        )
        bounds = (*map(str, LATENCY_BUCKETS), "+Inf")
        for values, counts in sorted(snapshot["latency"].items()):
            latency.add_metric(values, cumulative(bounds, counts[:-1]), sum_value=counts[-1])
        yield latency
        process = snapshot["process"]
        for process_family in self._process.collect():
            process_family.samples = [
                sample._replace(value=process.get(sample.name, sample.value))
                for sample in process_family.samples
            ]
            yield process_family


def cumulative(bounds: tuple[str, ...], counts: list[float]) -> list[tuple[str, float]]:
    """(upper bound, count of values up to it) pairs, ending with +Inf."""
    pairs: list[tuple[str, float]] = []
    running = 0.0
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        pairs.append((bound, running))
    return pairs
