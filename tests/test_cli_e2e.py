"""The proxy started the way users start it: `spapi-proxy …` as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig
from tests.conftest import ORDERS_TEST_CASE_200, emulator_state, url_of
from tests.support.moto_sts import free_port

SCRIPT = str(Path(sys.executable).parent / "spapi-proxy")


def write_config(tmp_path: Path, emulator: TestServer, port: int) -> Path:
    base = url_of(emulator)
    config = tmp_path / "spapi-proxy.yaml"
    config.write_text(
        f"""
listen:
  port: {port}
upstream:
  endpoint: {base}
lwa:
  client_id: ${{LWA_CLIENT_ID}}
  client_secret: ${{LWA_CLIENT_SECRET}}
  refresh_token: ${{LWA_REFRESH_TOKEN}}
  token_url: {base}/auth/o2/token
"""
    )
    config.chmod(0o600)
    return config


def lwa_environment(config: EmulatorConfig) -> dict[str, str]:
    return {
        **os.environ,
        "LWA_CLIENT_ID": config.client_id,
        "LWA_CLIENT_SECRET": config.client_secret,
        "LWA_REFRESH_TOKEN": config.refresh_token,
    }


async def wait_healthy(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.returncode is None, "the proxy exited during start-up"
            try:
                async with session.get(f"http://127.0.0.1:{port}/_proxy/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the proxy did not become healthy within 20 s")


async def test_spapi_proxy_run_serves_curl_like_requests_and_stops_cleanly(
    emulator: TestServer, tmp_path: Path
) -> None:
    config = EmulatorConfig()
    port = free_port()
    config_file = write_config(tmp_path, emulator, port)
    process = await asyncio.create_subprocess_exec(
        SCRIPT,
        "run",
        "--config",
        str(config_file),
        "--log-level",
        "DEBUG",
        env=lwa_environment(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_healthy(port, process)
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}{ORDERS_TEST_CASE_200}"
            async with session.get(url) as response:
                assert response.status == 200
                assert (await response.json())["payload"]["Orders"]
                request_id = response.headers["x-amzn-RequestId"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    log = output.decode()

    assert process.returncode == 0, log
    assert "GET /orders/v0/orders 200" in log
    assert request_id in log
    assert "CreatedAfter" not in log  # the access line has the path without the query
    sent_tokens = [
        value
        for received in emulator_state(emulator).received
        for name, value in received.headers
        if name.lower() == "x-amz-access-token"
    ]
    assert sent_tokens
    for secret in (config.client_secret, config.refresh_token, *sent_tokens):
        assert secret not in log


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_non_loopback_listener_without_a_token_exits_2_and_says_why() -> None:
    result = run_cli("run", "--host", "0.0.0.0", env=lwa_environment(EmulatorConfig()))
    assert result.returncode == 2
    assert "listen.auth_token" in result.stderr
    assert "listen.allow_unauthenticated" in result.stderr


def test_check_config_prints_the_config_masked(tmp_path: Path) -> None:
    config = EmulatorConfig()
    result = run_cli("check-config", env=lwa_environment(config))
    assert result.returncode == 0, result.stderr
    assert "client_secret: '***'" in result.stdout
    assert config.client_secret not in result.stdout
    assert config.refresh_token not in result.stdout


def test_unknown_key_exits_2_naming_it(tmp_path: Path) -> None:
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("upstream:\n  regoin: eu\n")
    result = run_cli(
        "check-config", "--config", str(config_file), env=lwa_environment(EmulatorConfig())
    )
    assert result.returncode == 2
    assert "upstream.regoin" in result.stderr


def test_python_dash_m_proxy_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("spapi-proxy ")


def test_run_without_credentials_points_to_the_demo_and_the_readme() -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LWA_", "SPAPI_PROXY_", "SPAPI_ROLE"))
    }
    result = run_cli("run", env=environment)
    assert result.returncode == 2
    assert "LWA_CLIENT_ID is not set" in result.stderr
    assert "spapi-proxy demo" in result.stderr
    assert "README" in result.stderr
    assert "Traceback" not in result.stderr
