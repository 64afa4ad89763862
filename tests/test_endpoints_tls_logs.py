"""The proxy's own endpoints, HTTPS to the upstream, and logs that never hold a secret."""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
from pathlib import Path

import pytest
import trustme
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.observability.logging_setup import pin_noisy_loggers
from proxy.secret import Secret
from proxy.server.run import RunningServer
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    moto_aws_settings,
    moto_key_lookup,
    settings_for,
)
from tests.support.clock import FakeClock
from tests.support.moto_sts import MotoSts
from tests.support.rawhttp import build_request, raw_request


async def fetch(proxy: RunningServer, target: str, headers: list[tuple[str, str]] | None = None):  # type: ignore[no-untyped-def]
    return await raw_request("127.0.0.1", proxy.port or 0, build_request("GET", target, headers))


async def test_health_and_metrics(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    health = await fetch(proxy, "/_proxy/health")
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok"}

    assert (await fetch(proxy, ORDERS_TEST_CASE_200)).status == 200
    metrics = (await fetch(proxy, "/_proxy/metrics")).body.decode()
    # the forwarded request; the health probe is not traffic
    labels = 'method="GET",operation="getOrders",profile="default",status="200"'
    assert f"spapi_proxy_requests_total{{{labels}}} 1.0" in metrics
    assert 'spapi_proxy_credential_refreshes_total{source="lwa"} 1.0' in metrics
    assert f"spapi_proxy_upstream_latency_seconds_count{{{labels}}} 1.0" in metrics


async def test_ready_names_the_failing_source_and_recovers(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    settings = settings_for(emulator, emulator_config)
    wrong = dataclasses.replace(settings.lwa, client_secret=Secret("wrong-secret-value"))
    broken = await start_proxy(dataclasses.replace(settings, lwa=wrong))
    not_ready = await fetch(broken, "/_proxy/ready")
    assert not_ready.status == 503
    reasons = json.loads(not_ready.body)["reasons"]
    assert reasons[0].startswith("lwa: LwaRejected")
    assert "wrong-secret-value" not in not_ready.body.decode()
    metrics = (await fetch(broken, "/_proxy/metrics")).body.decode()
    assert 'spapi_proxy_credential_refresh_failures_total{source="lwa"} 1.0' in metrics

    healthy = await start_proxy(settings)
    assert (await fetch(healthy, "/_proxy/ready")).status == 200


async def test_unknown_own_path_is_404_and_never_forwarded(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    response = await fetch(proxy, "/_proxy/nope")
    assert response.status == 404
    assert response.header("x-spapi-proxy-error") == "NotFound"
    assert len(emulator_state(emulator).received) == 0


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


async def test_https_upstream_verified_against_the_configured_ca(
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    start_proxy: StartProxy,
    test_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1").configure_cert(server_context)
    config = EmulatorConfig(clock=clock)
    emulator = await aiohttp_server(create_emulator_app(config), ssl=server_context)
    ca_file = tmp_path / "test-ca.pem"
    test_ca.cert_pem.write_to_path(str(ca_file))
    settings = settings_for(emulator, config)
    assert settings.upstream.base_url.startswith("https://")

    trusted = dataclasses.replace(settings.upstream, ca_bundle=str(ca_file))
    proxy = await start_proxy(dataclasses.replace(settings, upstream=trusted))
    assert (await fetch(proxy, ORDERS_TEST_CASE_200)).status == 200
    assert emulator_state(emulator).received[-1].status == 200

    # Same server without its CA configured: the certificate is refused (LWA is the first
    # HTTPS call the proxy makes there), and nothing reaches the SP-API side.
    untrusting = await start_proxy(settings)
    before = len(emulator_state(emulator).received)
    response = await fetch(untrusting, ORDERS_TEST_CASE_200)
    assert response.status == 503
    assert "certificate" in json.loads(response.body)["errors"][0]["message"].lower()
    assert len(emulator_state(emulator).received) == before


async def test_debug_logs_of_a_signed_session_hold_no_secret(
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    moto_sts: MotoSts,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pin_noisy_loggers()  # what the CLI's logging set-up does for botocore
    caplog.set_level(logging.DEBUG)
    config = EmulatorConfig(clock=clock, extra_credentials=moto_key_lookup(moto_sts))
    emulator = await aiohttp_server(create_emulator_app(config))
    client_key = "client-key-9f8e7d6c5b4a"
    settings = settings_for(
        emulator, config, aws=moto_aws_settings(moto_sts), auth_token=Secret(client_key)
    )
    proxy = await start_proxy(settings)
    key = [("x-spapi-proxy-key", client_key)]

    assert (await fetch(proxy, ORDERS_TEST_CASE_200, key)).status == 200
    await fetch(proxy, ORDERS_TEST_CASE_200, [("x-spapi-proxy-key", "wrong")])
    await fetch(proxy, ORDERS_TEST_CASE_200, [*key, ("x-amz-access-token", "Atza|client-sent")])
    await fetch(proxy, "/orders/v0/orders?CreatedAfter=TEST_CASE_400", key)

    secrets = [config.client_secret, config.refresh_token, client_key, moto_sts.secret_access_key]
    for received in emulator_state(emulator).received:
        for name, value in received.headers:
            if name.lower() in ("x-amz-access-token", "x-amz-security-token"):
                secrets.append(value)
            if name.lower() == "authorization":
                secrets.append(value.rsplit("Signature=", 1)[1])
    secrets.append("Atza|client-sent")
    assert len(secrets) > 6
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "GET /orders/v0/orders 200" in logged  # the access line is there
    for secret in secrets:
        assert secret not in logged
