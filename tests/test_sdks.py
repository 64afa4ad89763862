"""docs/sdks.md, run as users run it: each SDK in a virtualenv of its own, the guide's code taken
from the document, every call through `spapi-proxy demo`; and the answer an SDK's proxy option
(CONNECT, absolute URLs) gets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig
from tests.conftest import StartProxy, settings_for
from tests.support.moto_sts import free_port
from tests.support.rawhttp import build_request, raw_request
from tests.test_demo_cli import assert_no_secret, read_until, spapi_proxy, stop

REPO_ROOT = Path(__file__).resolve().parents[1]
GUIDE = REPO_ROOT / "docs" / "sdks.md"
# One virtualenv per SDK, kept between runs (gitignored): a fresh install takes a while.
SDK_VENVS = REPO_ROOT / ".cache" / "sdk-venvs"
GUIDE_URL = "http://127.0.0.1:8000"
# A block the tests run: `<!-- run: TAG -->` on the line before its fence.
RUNNABLE = re.compile(r"<!-- run: (?P<tag>\S+) -->\n```(?P<language>\w+)\n(?P<code>.*?)```", re.S)
# The releases the guide was last checked with; raising one is a deliberate change.
REQUIREMENTS = {
    "python-amazon-sp-api": "python-amazon-sp-api==2.1.35",
    "amzn-sp-api": "amzn-sp-api==1.13.0",
    "requests": "requests==2.34.2",
}

ORDER_ID = "113-4821537-2294760"  # the emulator's getOrders TEST_CASE_200 answer
CITY = "Seattle"  # its getOrderAddress TEST_CASE_200 answer
DESTINATION = "emulator-orders-queue"  # its first getDestinations entry
CREATED = "0c5e9a47-3b2d-4f18-a6e0-7d914b2c8f31"  # its createDestination answer
GET_ORDERS = "GET /orders/v0/orders 200"
GET_ADDRESS = "GET /orders/v0/orders/TEST_CASE_200/address 200"
GET_DESTINATIONS = "GET /notifications/v1/destinations 200"
POST_DESTINATION = "POST /notifications/v1/destinations 200"
POST_RDT = "POST /tokens/2021-03-01/restrictedDataToken 200"
CREATE_REPORT = "POST /reports/2021-06-30/reports 202"
CREATE_FEED_DOCUMENT = "POST /feeds/2021-06-30/documents 201"
CREATE_FEED = "POST /feeds/2021-06-30/feeds 202"
RDT_LIFETIME = str(int(EmulatorConfig().token_lifetime_s))

# What each block prints, and the access lines the demo writes for its calls.
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "python-amazon-sp-api": (
        [ORDER_ID, CITY, DESTINATION, RDT_LIFETIME],
        [GET_ORDERS, GET_ADDRESS, GET_DESTINATIONS, POST_RDT],
    ),
    "python-amazon-sp-api+proxy.sdk": ([CITY], [GET_ADDRESS]),
    # the orders report's first column; the feed's processing report counts its two records
    "python-amazon-sp-api+reports+proxy.sdk": (
        ["amazon-order-id", "2"],
        [CREATE_REPORT, CREATE_FEED_DOCUMENT, CREATE_FEED],
    ),
    "amzn-sp-api": (
        [ORDER_ID, CITY, DESTINATION, CREATED],
        [GET_ORDERS, GET_ADDRESS, GET_DESTINATIONS, POST_DESTINATION],
    ),
    "amzn-sp-api+proxy.sdk": ([CITY], [GET_ADDRESS]),
    "requests": (
        [ORDER_ID, CITY, DESTINATION, CREATED],
        [GET_ORDERS, GET_ADDRESS, GET_DESTINATIONS, POST_DESTINATION],
    ),
    "curl": ([], [GET_ORDERS, GET_ADDRESS, GET_DESTINATIONS, POST_DESTINATION]),
    "node": ([ORDER_ID, CITY], [GET_ORDERS, GET_ADDRESS]),
}

REVERSE_PROXY_HINT = "spapi-proxy is a reverse proxy: set the SDK's endpoint to http://127.0.0.1:"


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("CONNECT", "sellingpartnerapi-na.amazon.com:443"),
        ("GET", "http://sellingpartnerapi-na.amazon.com/orders/v0/orders"),
    ],
)
async def test_an_sdks_proxy_option_gets_a_400_that_says_set_the_endpoint(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    method: str,
    target: str,
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    answer = await raw_request("127.0.0.1", proxy.port, build_request(method, target))
    assert answer.status == 400
    assert answer.header("x-spapi-proxy-error") == "InvalidInput"
    error = json.loads(answer.body)["errors"][0]
    assert error["code"] == "InvalidInput"
    assert error["message"].startswith(REVERSE_PROXY_HINT + str(proxy.port)), error
    assert "docs/sdks.md" in error["message"]


async def test_a_target_that_is_neither_a_path_nor_a_url_keeps_the_plain_answer(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    answer = await raw_request("127.0.0.1", proxy.port, build_request("OPTIONS", "*"))
    assert answer.status == 400
    message = json.loads(answer.body)["errors"][0]["message"]
    assert message.startswith("The request target must be a path"), message


def runnable_blocks() -> dict[str, tuple[str, str]]:
    """tag -> (language, code) for every block of the guide the tests run."""
    found = {m["tag"]: (m["language"], m["code"]) for m in RUNNABLE.finditer(GUIDE.read_text())}
    return found


def test_every_runnable_block_of_the_guide_is_tested() -> None:
    assert set(runnable_blocks()) == set(EXPECTED)


def unavailable(message: str) -> NoReturn:
    """Skip on a developer's machine; under CI a missing tool is a broken set-up."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def sdk_python(tag: str) -> str:
    """The python of the tag's virtualenv, created and filled on first use."""
    requirement = REQUIREMENTS[tag.split("+")[0]]
    venv = SDK_VENVS / tag.split("+")[0]
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    if marker.is_file() and marker.read_text() == requirement:
        return str(python)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-input", requirement],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.CalledProcessError as error:
        unavailable(f"pip cannot install {requirement}: {str(error.stderr)[-500:]}")
    except subprocess.TimeoutExpired:
        unavailable(f"pip took over 10 minutes to install {requirement}")
    marker.write_text(requirement)
    return str(python)


def command_for(tag: str, language: str, script: Path) -> list[str]:
    if language == "python":
        return [sdk_python(tag), str(script)]
    if language == "sh":
        return ["bash", "-e", str(script)]
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the guide's fetch example needs Node 18 or newer")
    return [str(node), str(script)]


@pytest.mark.parametrize("tag", sorted(EXPECTED))
async def test_the_guides_code_works_through_the_demo(tag: str, tmp_path: Path) -> None:
    language, code = runnable_blocks()[tag]
    printed, access_lines = EXPECTED[tag]
    script = tmp_path / {"python": "guide.py", "sh": "guide.sh", "js": "guide.mjs"}[language]
    port = free_port()
    script.write_text(code.replace(GUIDE_URL, f"http://127.0.0.1:{port}"))
    command = command_for(tag, language, script)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if tag.endswith("+proxy.sdk"):
        environment["PYTHONPATH"] = str(REPO_ROOT)  # spapi-proxy importable beside the SDK
    async with spapi_proxy("demo", "--port", str(port), "--log-level", "DEBUG") as demo:
        _, before = await read_until(demo, "curl ")
        run = await asyncio.create_subprocess_exec(
            *command,
            cwd=tmp_path,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(run.communicate(), timeout=120)
        demo_output = "".join(before) + await stop(demo)
    assert run.returncode == 0, err.decode()[-3000:]
    if printed:
        assert out.decode().split() == printed, out.decode()
    else:
        for text in (ORDER_ID, CITY, DESTINATION, CREATED):
            assert text in out.decode()
    for line in access_lines:  # every call went through the proxy
        assert line in demo_output, demo_output
    assert_no_secret(demo_output)
