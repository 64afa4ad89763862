"""postman/: the committed collection is the generator's output, and every request in it gets
the status its test expects when sent through the proxy (in-process, and with newman)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig
from tests.conftest import StartProxy, settings_for
from tests.support.moto_sts import free_port
from tests.test_demo_cli import read_until, spapi_proxy, stop

REPO_ROOT = Path(__file__).resolve().parents[1]
COLLECTION = REPO_ROOT / "postman" / "spapi-proxy.postman_collection.json"
ENVIRONMENT = REPO_ROOT / "postman" / "spapi-proxy.postman_environment.json"
# .ci/run installs newman here (npm --prefix); a newman on PATH does as well.
LOCAL_NEWMAN = REPO_ROOT / ".ci" / "node" / "node_modules" / ".bin" / "newman"
EXPECTED_STATUS = re.compile(r"pm\.response\.to\.have\.status\((\d+)\)")


def requests_in(collection: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(name, Postman request, the status its test expects) for every request, folders opened."""
    found = []
    for folder in collection["item"]:
        for item in folder["item"]:
            script = "\n".join(line for event in item["event"] for line in event["script"]["exec"])
            expected = EXPECTED_STATUS.search(script)
            assert expected, f"{item['name']} has no test on the status"
            found.append((item["name"], item["request"], int(expected[1])))
    return found


def test_committed_postman_files_are_what_the_script_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gen_postman.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_postman_collection_has_a_request_per_case_and_no_auth() -> None:
    collection = json.loads(COLLECTION.read_text())
    environment = json.loads(ENVIRONMENT.read_text())
    assert collection["auth"] == {"type": "noauth"}
    requests = requests_in(collection)
    names = {name for name, _, _ in requests}
    # restricted, grantless, a POST with a body, and Amazon's own 400 among them
    assert {"getOrderAddress 200", "getDestinations 200", "createDestination 200"} <= names
    assert "getOrders 400" in names
    assert len(names) == len(requests)
    for _, request, _ in requests:
        assert "auth" not in request
        assert request["url"]["raw"].startswith("{{baseUrl}}/")
        assert not any(header["key"].lower() == "authorization" for header in request["header"])
    assert [value["key"] for value in environment["values"]] == ["baseUrl"]


async def test_every_postman_request_gets_its_expected_status_through_the_proxy(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    base = f"http://127.0.0.1:{proxy.port}"
    requests = requests_in(json.loads(COLLECTION.read_text()))
    async with aiohttp.ClientSession() as session:
        for name, request, expected in requests:
            url = yarl.URL(request["url"]["raw"].replace("{{baseUrl}}", base), encoded=True)
            headers = {header["key"]: header["value"] for header in request["header"]}
            body = request.get("body", {}).get("raw", "").encode()
            async with session.request(
                request["method"], url, headers=headers, data=body or None
            ) as response:
                answer = await response.text()
                assert response.status == expected, f"{name}: {answer}"
                assert "x-spapi-proxy-error" not in response.headers, f"{name}: {answer}"


def newman_command() -> str | None:
    if LOCAL_NEWMAN.exists():
        return str(LOCAL_NEWMAN)
    return shutil.which("newman")


async def test_newman_runs_the_collection_against_the_demo() -> None:
    newman = newman_command()
    if newman is None:
        message = "newman is not installed: npm install --prefix .ci/node newman (as .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    async with spapi_proxy("demo", "--port", str(port)) as demo:
        await read_until(demo, "curl ")
        run = await asyncio.create_subprocess_exec(
            newman,
            "run",
            str(COLLECTION),
            "--environment",
            str(ENVIRONMENT),
            "--env-var",
            f"baseUrl=http://127.0.0.1:{port}",
            "--reporters",
            "cli",
            "--color",
            "off",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(run.communicate(), timeout=120)
        await stop(demo)
    report = output.decode()
    assert run.returncode == 0, report
    requests = len(requests_in(json.loads(COLLECTION.read_text())))
    # newman's summary table: "│  requests  │  executed │  failed │"
    executed = re.search(r"requests\s*│\s*(\d+)\s*│\s*(\d+)", report)
    assert executed, report
    assert (int(executed[1]), int(executed[2])) == (requests, 0), report
