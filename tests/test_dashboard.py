"""The shipped Grafana dashboard and the monitoring compose override: every metric the
dashboard's queries name is one the proxy exports from its start, and Prometheus scrapes the
proxy's metrics path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from proxy.emulator import EmulatorConfig
from tests.conftest import StartProxy, settings_for
from tests.support.rawhttp import build_request, raw_request

DOCKER = Path(__file__).resolve().parent.parent / "docker"
DASHBOARD = DOCKER / "grafana" / "spapi-proxy.json"
# A PromQL word that names one of the proxy's metrics (label names and functions don't match).
METRIC = re.compile(r"\b(?:spapi_proxy|process)_[a-z_]+\b")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def family_of(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def dashboard_queries() -> list[str]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in document["panels"] for target in panel["targets"]]
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


async def test_the_dashboard_names_only_metrics_the_proxy_exports_from_its_start(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    # A fresh proxy, no traffic: what a dashboard sees right after a deploy.
    scraped = await raw_request(
        "127.0.0.1", proxy.port or 0, build_request("GET", "/_proxy/metrics")
    )
    exported = {
        family_of(name)
        for family in text_string_to_metric_families(scraped.body.decode())
        for name in (family.name, *(sample.name for sample in family.samples))
    }

    queries = dashboard_queries()
    named = {family_of(name) for query in queries for name in METRIC.findall(query)}

    assert len(queries) >= 15
    assert named  # the pattern finds the metrics in the queries at all
    assert named <= exported, f"not exported: {sorted(named - exported)}"
    for wanted in ("spapi_proxy_requests", "spapi_proxy_quota_rejections", "process_cpu_seconds"):
        assert wanted in named  # requests, 429s local against Amazon's, the process


def test_a_query_naming_a_metric_the_proxy_lacks_would_be_caught() -> None:
    assert family_of("spapi_proxy_upstream_latency_seconds_bucket") == (
        "spapi_proxy_upstream_latency_seconds"
    )
    assert METRIC.findall('sum(rate(spapi_proxy_made_up_total{job=~"$job"}[5m]))') == [
        "spapi_proxy_made_up_total"
    ]


def test_prometheus_scrapes_the_proxys_metrics_path_and_grafana_gets_the_dashboard() -> None:
    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/_proxy/metrics"
    assert job["static_configs"][0]["targets"] == ["proxy:8000"]

    compose = yaml.safe_load((DOCKER / "docker-compose.monitoring.yml").read_text())
    grafana_volumes = compose["services"]["grafana"]["volumes"]
    assert any(volume.startswith("./grafana/spapi-proxy.json:") for volume in grafana_volumes)
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "spapi-proxy.yml").read_text()
    )
    mounted = next(v for v in grafana_volumes if v.startswith("./grafana/spapi-proxy.json:"))
    assert mounted.split(":")[1].startswith(provider["providers"][0]["options"]["path"])
