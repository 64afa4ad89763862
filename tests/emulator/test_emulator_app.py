"""Wiring: one-port routing, the banner, independence from the proxy, no secrets in logs."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest
from botocore.credentials import Credentials

import proxy.emulator
from proxy.emulator import EmulatorConfig
from proxy.emulator.app import banner
from tests.emulator.conftest import Emulator

PACKAGE = Path(proxy.emulator.__file__).parent


# Generated data, no logic: the usage plans `--throttle models` applies.
SHARED_DATA = "proxy.forwarding.operations_table"


def test_emulator_imports_nothing_from_the_proxy_but_the_generated_operations_table() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name == "proxy" or name.startswith("proxy."):
                    shared = name == SHARED_DATA
                    assert shared or name.startswith("proxy.emulator"), (
                        f"{path.name} imports {name}"
                    )


def test_banner_prints_the_demo_credentials_and_urls() -> None:
    config = EmulatorConfig()
    text = banner(config, "127.0.0.1", 9000, 8, 14)
    assert "http://127.0.0.1:9000/auth/o2/token" in text
    for value in (
        config.client_id,
        config.client_secret,
        config.refresh_token,
        config.aws_access_key_id,
        config.aws_secret_access_key,
    ):
        assert value in text


def test_config_repr_hides_secrets() -> None:
    config = EmulatorConfig()
    assert config.client_secret not in repr(config)
    assert config.aws_secret_access_key not in repr(config)


async def test_post_form_to_root_without_action_is_sp_api(emu: Emulator) -> None:
    response = await emu.send(
        "POST", "/", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=b"
    )
    assert response.status == 403  # SP-API's missing token, not an STS XML error
    assert response.content_type == "application/json"


async def test_no_token_or_secret_in_logs(
    emu: Emulator, iam: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await emu.token()
    address = "/orders/v0/orders/TEST_CASE_200/address"
    rdt_body = json.dumps({"restrictedResources": [{"method": "GET", "path": address}]}).encode()
    issued = await emu.send(
        "POST",
        "/tokens/2021-03-01/restrictedDataToken",
        {"x-amz-access-token": token, "content-type": "application/json"},
        rdt_body,
        sign=iam,
    )
    rdt = (await issued.json())["restrictedDataToken"]
    await emu.send(
        "GET", "/orders/v0/orders/TEST_CASE_200/address", {"x-amz-access-token": rdt}, sign=iam
    )
    await emu.send("GET", "/orders/v0/orders", {"x-amzn-access-token": token})
    # botocore's own DEBUG lines (the test's signer) print tokens; only the emulator's count
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(("proxy.emulator", "aiohttp"))
    )
    assert "-> 200 (getOrderAddress)" in logged
    for secret in (
        token,
        rdt,
        emu.config.client_secret,
        emu.config.refresh_token,
        emu.config.aws_secret_access_key,
    ):
        assert secret not in logged
