"""The per-request metrics, counted as plain numbers and rendered at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proxy.observability.metrics import LATENCY_BUCKETS, ProxyMetrics

ORDERS = {"operation": "getOrders", "method": "GET", "status": "200", "profile": "default"}


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    raise AssertionError(f"{name}{labels} not in the metrics")


def test_requests_are_counted_by_method_and_status_with_unknown_methods_as_other() -> None:
    metrics = ProxyMetrics()
    for method, status in [("GET", 200), ("GET", 200), ("POST", 429), ("BREW", 400)]:
        metrics.count_request("getOrders", method, status, "default")
    text = metrics.render().decode()
    name = "spapi_proxy_requests_total"
    assert sample(text, name, **ORDERS) == 2
    assert sample(text, name, **{**ORDERS, "method": "POST", "status": "429"}) == 1
    assert sample(text, name, **{**ORDERS, "method": "OTHER", "status": "400"}) == 1
    assert "BREW" not in text


def test_latency_histogram_buckets_are_cumulative_and_inclusive_of_their_bound() -> None:
    metrics = ProxyMetrics()
    for seconds in (0.001, LATENCY_BUCKETS[0], 0.007, 0.3, 99.0):
        metrics.observe_upstream_latency(seconds, "getOrders", "GET", 200, "default")
    text = metrics.render().decode()
    name = "spapi_proxy_upstream_latency_seconds"
    assert sample(text, f"{name}_bucket", le="0.005", **ORDERS) == 2  # 0.001 and exactly 0.005
    assert sample(text, f"{name}_bucket", le="0.01", **ORDERS) == 3
    assert sample(text, f"{name}_bucket", le="0.25", **ORDERS) == 3
    assert sample(text, f"{name}_bucket", le="0.5", **ORDERS) == 4
    assert sample(text, f"{name}_bucket", le="30.0", **ORDERS) == 4
    assert sample(text, f"{name}_bucket", le="+Inf", **ORDERS) == 5
    assert sample(text, f"{name}_count", **ORDERS) == 5
    assert abs(sample(text, f"{name}_sum", **ORDERS) - 99.313) < 1e-9


def test_workers_snapshots_add_up_except_start_time_and_descriptor_limit() -> None:
    one, two = ProxyMetrics(), ProxyMetrics()
    one.count_request("getOrders", "GET", 200, "default")
    two.count_request("getOrders", "GET", 200, "default")
    two.observe_upstream_latency(0.2, "getOrders", "GET", 200, "default")
    sibling = two.snapshot()
    sibling["process"]["process_start_time_seconds"] = 1.0  # started long before
    sibling["process"]["process_cpu_seconds_total"] = 1000.0

    text = one.render([sibling]).decode()

    assert sample(text, "spapi_proxy_requests_total", **ORDERS) == 2
    assert sample(text, "spapi_proxy_upstream_latency_seconds_count", **ORDERS) == 1
    assert sample(text, "process_start_time_seconds") == 1.0
    assert sample(text, "process_cpu_seconds_total") > 1000.0
    assert sample(text, "process_max_fds") == one.snapshot()["process"]["process_max_fds"]
