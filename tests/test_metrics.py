"""The per-request metrics, counted as plain numbers and rendered at scrape time."""

from __future__ import annotations

from proxy.observability.metrics import LATENCY_BUCKETS, ProxyMetrics


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


def test_requests_are_counted_by_method_and_status_with_unknown_methods_as_other() -> None:
    metrics = ProxyMetrics()
    for method, status in [("GET", 200), ("GET", 200), ("POST", 429), ("BREW", 400)]:
        metrics.count_request(method, status)
    text = metrics.render().decode()
    assert sample(text, 'spapi_proxy_requests_total{method="GET",status="200"}') == 2
    assert sample(text, 'spapi_proxy_requests_total{method="POST",status="429"}') == 1
    assert sample(text, 'spapi_proxy_requests_total{method="OTHER",status="400"}') == 1
    assert "BREW" not in text


def test_latency_histogram_buckets_are_cumulative_and_inclusive_of_their_bound() -> None:
    metrics = ProxyMetrics()
    for seconds in (0.001, LATENCY_BUCKETS[0], 0.007, 0.3, 99.0):
        metrics.observe_upstream_latency(seconds)
    text = metrics.render().decode()
    name = "spapi_proxy_upstream_latency_seconds"
    assert sample(text, f'{name}_bucket{{le="0.005"}}') == 2  # 0.001 and exactly 0.005
    assert sample(text, f'{name}_bucket{{le="0.01"}}') == 3
    assert sample(text, f'{name}_bucket{{le="0.25"}}') == 3
    assert sample(text, f'{name}_bucket{{le="0.5"}}') == 4
    assert sample(text, f'{name}_bucket{{le="30.0"}}') == 4
    assert sample(text, f'{name}_bucket{{le="+Inf"}}') == 5
    assert sample(text, f"{name}_count") == 5
    assert abs(sample(text, f"{name}_sum") - 99.313) < 1e-9
