"""`spapi-proxy demo` and `spapi-proxy emulator` started the way users start them: as processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import yarl
from botocore.credentials import Credentials

from proxy.emulator import EmulatorConfig
from tests.conftest import ORDERS_TEST_CASE_200, SECRET_SHAPES, SUITE_SECRETS
from tests.emulator.conftest import sign_headers
from tests.support.models import MODELS, requires_models
from tests.support.moto_sts import free_port

SCRIPT = str(Path(sys.executable).parent / "spapi-proxy")
START_TIMEOUT_S = 30.0
MISSING_TOKEN = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "Access token is missing in the request header.",
        }
    ]
}


@asynccontextmanager
async def spapi_proxy(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The console script with stdout and stderr merged; killed if the test left it running."""
    process = await asyncio.create_subprocess_exec(
        SCRIPT, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_until(process: asyncio.subprocess.Process, prefix: str) -> tuple[str, list[str]]:
    """The first output line starting with ``prefix``, and every line read up to it."""
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            raw = await process.stdout.readline()
            assert raw, "the process ended before printing it:\n" + "".join(lines)
            line = raw.decode()
            lines.append(line)
            if line.startswith(prefix):
                return line.strip(), lines


async def stop(process: asyncio.subprocess.Process) -> str:
    """SIGTERM, then the rest of the output once the process has exited."""
    process.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    return rest.decode()


def assert_no_secret(output: str) -> None:
    assert not SECRET_SHAPES.search(output), output
    for secret in SUITE_SECRETS:
        assert secret not in output


async def test_demo_prints_a_curl_line_that_works_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    async with spapi_proxy("demo", "--port", str(port), "--log-level", "DEBUG") as process:
        curl_line, before = await read_until(process, "curl ")
        url = shlex.split(curl_line)[1]
        assert url == f"http://127.0.0.1:{port}{ORDERS_TEST_CASE_200}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(yarl.URL(url, encoded=True)) as response,
        ):
            assert response.status == 200
            assert (await response.json())["payload"]["Orders"]
            request_id = response.headers["x-amzn-RequestId"]
        started = time.monotonic()
        after = await stop(process)
    output = "".join(before) + after

    assert process.returncode == 0, output
    assert time.monotonic() - started < 5, "draining an idle demo should be quick"
    # Signed for real: the emulator's STS issued keys and its sandbox verified the SigV4.
    assert "STS issued temporary credentials" in output
    assert "GET /orders/v0/orders 200" in output
    assert request_id in output
    assert "Traceback" not in output
    assert_no_secret(output)


def test_demo_on_a_port_in_use_says_so_and_exits_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [SCRIPT, "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port}: the port is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert "curl" not in result.stdout


async def test_demo_ignores_the_users_aws_profile() -> None:
    environment = {**os.environ, "AWS_PROFILE": "no-such-profile-anywhere"}
    async with spapi_proxy("demo", "--port", "0", env=environment) as process:
        await read_until(process, "curl ")


async def test_demo_never_sends_its_loopback_traffic_to_the_shells_company_proxy() -> None:
    # A proxy variable pointing at a port where nothing listens: followed, every token fetch and
    # request of the demo would fail.
    dead = f"http://127.0.0.1:{free_port()}"
    environment = {**os.environ, "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "NO_PROXY": ""}
    port = free_port()
    async with spapi_proxy("demo", "--port", str(port), env=environment) as process:
        curl_line, _ = await read_until(process, "curl ")
        url = shlex.split(curl_line)[1]
        async with (
            aiohttp.ClientSession() as session,  # trust_env off: the test's own call goes direct
            session.get(yarl.URL(url, encoded=True)) as response,
        ):
            assert response.status == 200


async def test_demo_on_another_host_serves_there_and_its_curl_line_works() -> None:
    port = free_port()
    async with spapi_proxy("demo", "--host", "127.0.0.2", "--port", str(port)) as process:
        curl_line, _ = await read_until(process, "curl ")
        url = shlex.split(curl_line)[1]
        assert url.startswith(f"http://127.0.0.2:{port}/")
        async with (
            aiohttp.ClientSession() as session,
            session.get(yarl.URL(url, encoded=True)) as response,
        ):
            assert response.status == 200
        await stop(process)


def outward_address() -> str | None:
    """This machine's address on its default route, if it has one (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_demo_on_all_interfaces_needs_no_token_and_answers_from_outside() -> None:
    # A container publishes the demo's port, so the demo must listen beyond loopback; it holds
    # only the emulator's published credentials, so there is nothing a token would protect.
    port = free_port()
    async with spapi_proxy("demo", "--host", "0.0.0.0", "--port", str(port)) as process:
        curl_line, lines = await read_until(process, "curl ")
        url = shlex.split(curl_line)[1]
        assert url.startswith(f"http://127.0.0.1:{port}/"), "a wildcard is not an address to curl"
        assert "reachable from other machines" in "".join(lines)
        outward = outward_address()
        targets = [url] + ([url.replace("127.0.0.1", outward)] if outward else [])
        async with aiohttp.ClientSession() as session:
            for target in targets:
                async with session.get(yarl.URL(target, encoded=True)) as response:
                    assert response.status == 200, target
        await stop(process)
    assert process.returncode == 0


def test_demo_with_a_missing_models_folder_exits_2() -> None:
    result = subprocess.run(
        [SCRIPT, "demo", "--models", "/nonexistent/spapi-models"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--models /nonexistent/spapi-models: no such directory" in result.stderr


@requires_models
async def test_demo_with_models_logs_what_it_loaded() -> None:
    async with spapi_proxy("demo", "--port", str(free_port()), "--models", str(MODELS)) as process:
        _, lines = await read_until(process, "curl ")
        rest = await stop(process)  # log lines are written in batches, so some come later
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    loaded = re.search(r"Loaded (\d+) operations with (\d+) static cases from", output)
    serving = re.search(r"\((\d+) operations, (\d+) static cases;", output)
    assert loaded, output
    assert serving, output
    assert int(loaded[2]) > 0
    # The built-in catalog adds the operations the models lack.
    assert int(serving[1]) >= int(loaded[1])


async def wait_listening(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.returncode is None, "the emulator exited during start-up"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"the emulator did not listen on {port} within {START_TIMEOUT_S} s")


async def test_emulator_alone_is_lwa_and_a_strict_sp_api() -> None:
    config = EmulatorConfig()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with spapi_proxy("emulator", "--port", str(port)) as process:
        await wait_listening(port, process)
        async with aiohttp.ClientSession() as session:
            token = await lwa_token(session, base, config)
            orders = yarl.URL(base + ORDERS_TEST_CASE_200, encoded=True)

            async with session.get(orders, headers={"x-amz-access-token": token}) as response:
                assert response.status == 200
                assert (await response.json())["payload"]["Orders"]

            # The original bug: the token in the header SP-API does not read.
            async with session.get(orders, headers={"x-amzn-access-token": token}) as response:
                assert response.status == 403
                assert await response.json() == MISSING_TOKEN
                assert "x-amz-access-token" in response.headers["x-emulator-hint"]

            # A signature that does not verify: Amazon's 403 with the canonical request it
            # expected, token values masked.
            signed = sign_headers(
                "GET",
                str(orders),
                {"x-amz-access-token": token},
                b"",
                Credentials(config.aws_access_key_id, config.aws_secret_access_key),
            )
            signed["Authorization"] = signed["Authorization"][:-1] + (
                "0" if signed["Authorization"][-1] != "0" else "1"
            )
            async with session.get(orders, headers=signed) as response:
                assert response.status == 403
                body = await response.text()
                error = json.loads(body)["errors"][0]
                assert error["code"] == "InvalidSignature"
                assert "GET\n/orders/v0/orders\n" in error["details"]
                assert token not in body
        output = await stop(process)

    assert process.returncode == 0, output
    assert f"on http://127.0.0.1:{port}" in output
    assert f"LWA_CLIENT_ID={config.client_id}" in output  # it tells users what it accepts


async def lwa_token(session: aiohttp.ClientSession, base: str, config: EmulatorConfig) -> str:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": config.refresh_token,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
    }
    async with session.post(f"{base}/auth/o2/token", data=form) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["token_type"] == "bearer"
    assert answer["expires_in"] > 0
    token: str = answer["access_token"]
    assert token.startswith("Atza|")
    return token
