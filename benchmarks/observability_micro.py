"""Micro-benchmark: µs per request for what observability adds to the hot path.

Run as `python -m benchmarks.observability_micro`. Times, in one run and one process: choosing
the request id (a client's, or a new one), writing the access line as text and as JSON
(scrubbed, queued on the batched handler, which writes to /dev/null), and counting a request
and its upstream latency with the operation and profile labels, against the same two updates
keyed by method and status alone.
"""

from __future__ import annotations

import os
import statistics
import time
from bisect import bisect_left
from collections.abc import Callable

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.observability.access import AccessFacts
from proxy.observability.logging_setup import (
    JsonLogFormatter,
    LogFormatter,
    fast_access_writer,
    json_access_writer,
)
from proxy.observability.logsink import BatchedStreamHandler
from proxy.observability.metrics import LATENCY_BUCKETS, ProxyMetrics
from proxy.observability.redact import Redactor
from proxy.observability.request_ids import request_id_of

ITERATIONS = 50_000
ROUNDS = 7
HEADERS = [("Host", "127.0.0.1:8000"), ("User-Agent", "python-sp-api/1.0"), ("Accept", "*/*")]


def per_call_us(call: Callable[[], object]) -> float:
    """The median over ROUNDS of the mean µs per call across ITERATIONS calls."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(ITERATIONS):
            call()
        rounds.append((time.perf_counter() - started) / ITERATIONS * 1e6)
    return statistics.median(rounds)


def main() -> None:
    without_id = CIMultiDictProxy(CIMultiDict(HEADERS))
    with_id = CIMultiDictProxy(CIMultiDict([*HEADERS, ("X-Request-Id", "order-sync-7f3a-42")]))
    redactor = Redactor()
    redactor.add("a-configured-client-secret", configured=True)
    handler = BatchedStreamHandler(os.open(os.devnull, os.O_WRONLY))
    text = fast_access_writer(handler, LogFormatter(), redactor)
    as_json = json_access_writer(handler, JsonLogFormatter(), redactor)
    facts = AccessFacts("f2bf7d1df44b46be")
    facts.profile, facts.operation, facts.token_kind = "default", "getOrders", "lwa"
    facts.amazon_request_id = "b4be70a6-8d5f-4976-8ca0-e8613f872e40"
    path = "/orders/v0/orders"

    metrics = ProxyMetrics()

    def labelled() -> None:
        metrics.count_request("getOrders", "GET", 200, "default")
        metrics.observe_upstream_latency(0.0413, "getOrders", "GET", 200, "default")

    requests: dict[tuple[str, int], int] = {}
    latency = [0] * (len(LATENCY_BUCKETS) + 1)

    def by_method_and_status() -> None:
        key = ("GET", 200)
        requests[key] = requests.get(key, 0) + 1
        latency[bisect_left(LATENCY_BUCKETS, 0.0413)] += 1

    results = {
        "request id, none sent (one made)": per_call_us(lambda: request_id_of(without_id)),
        "request id, the client's": per_call_us(lambda: request_id_of(with_id)),
        "access line, text": per_call_us(lambda: text("GET", path, 200, 41.3, facts)),
        "access line, json": per_call_us(lambda: as_json("GET", path, 200, 41.3, facts)),
        "metrics, by operation and profile": per_call_us(labelled),
        "metrics, by method and status only": per_call_us(by_method_and_status),
    }
    handler.close()
    for name, us in results.items():
        print(f"{name:<36} {us:6.2f} µs")


if __name__ == "__main__":
    main()
