"""Logging configured from the config file and the environment: `logging.format` (text or JSON
lines) and `logging.level`, `--log-level` over both; JSON lines scrubbed like text ones."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.settings import LoggingSettings
from proxy.emulator import EmulatorConfig
from proxy.observability.access import AccessFacts
from proxy.observability.logging_setup import (
    ACCESS_LOGGER,
    JsonLogFormatter,
    json_access_writer,
)
from proxy.observability.logsink import BatchedStreamHandler
from proxy.observability.redact import RedactingFilter, Redactor
from tests.conftest import ORDERS_TEST_CASE_200
from tests.support.moto_sts import free_port
from tests.test_cli_e2e import SCRIPT, lwa_environment, wait_healthy, write_config

LWA_ENV = {
    "LWA_CLIENT_ID": "amzn1.application-oa2-client.abc",
    "LWA_CLIENT_SECRET": "a-client-secret",
    "LWA_REFRESH_TOKEN": "Atzr|a-refresh-token",
}


def test_logging_defaults_to_text_at_info() -> None:
    assert load_settings(None, LWA_ENV).logging == LoggingSettings(format="text", level="INFO")


def test_logging_from_the_file_and_from_variables(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("logging:\n  format: JSON\n  level: debug\n")
    config.chmod(0o600)
    assert load_settings(str(config), LWA_ENV).logging == LoggingSettings("json", "DEBUG")

    environ = {
        **LWA_ENV,
        "SPAPI_PROXY_LOGGING_FORMAT": "json",
        "SPAPI_PROXY_LOGGING_LEVEL": "Warning",
    }
    assert load_settings(None, environ).logging == LoggingSettings("json", "WARNING")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SPAPI_PROXY_LOGGING_FORMAT", "xml"), ("SPAPI_PROXY_LOGGING_LEVEL", "LOUD")],
)
def test_an_unknown_format_or_level_is_refused_naming_the_key(variable: str, value: str) -> None:
    with pytest.raises(
        ConfigError, match=variable.removeprefix("SPAPI_PROXY_").lower().replace("_", ".", 1)
    ):
        load_settings(None, {**LWA_ENV, variable: value})


def read_lines(fd: int) -> list[str]:
    chunks = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunks += os.read(fd, 65536)
    return chunks.decode().splitlines()


def test_json_lines_are_scrubbed_and_a_forged_line_stays_one_line() -> None:
    read_end, write_end = os.pipe()
    handler = BatchedStreamHandler(write_end)
    formatter = JsonLogFormatter()
    handler.setFormatter(formatter)
    redactor = Redactor()
    redactor.add("configured-secret-value", configured=True)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("test.jsonlines")
    logger.propagate = False
    logger.addHandler(handler)
    write_access = json_access_writer(handler, formatter, redactor)
    facts = AccessFacts("req-1\nx")
    facts.operation, facts.profile, facts.token_kind = "getOrders", "default", "lwa"
    facts.amazon_request_id = "amzn-1"
    try:
        logger.warning("refresh failed: %s\nforged line", "configured-secret-value Atza|leaked")
        try:
            raise RuntimeError("Atza|in-a-traceback")
        except RuntimeError:
            logger.exception("with a traceback")
        write_access("GET", '/orders/configured-secret-value/Atza|leaked"\n{', 200, 1.54, facts)
        handler.flush()
        lines = read_lines(read_end)
    finally:
        logger.removeHandler(handler)
        handler.close()
        os.close(read_end)
        os.close(write_end)

    assert len(lines) == 3
    warning, failure, access = (json.loads(line) for line in lines)
    assert warning["level"] == "WARNING"
    assert warning["logger"] == "test.jsonlines"
    assert warning["message"] == "refresh failed: *** ***\nforged line"
    assert warning["time"].endswith("Z")
    assert "Atza|in-a-traceback" not in failure["exception"]
    assert "RuntimeError" in failure["exception"]
    assert access["logger"] == ACCESS_LOGGER
    assert access["level"] == "INFO"
    assert access["method"] == "GET"
    assert access["path"] == '/orders/***/***"\n{'
    assert access["status"] == 200
    assert access["duration_ms"] == 1.5
    assert access["amazon_request_id"] == "amzn-1"
    assert access["request_id"] == "req-1\nx"
    assert access["operation"] == "getOrders"
    assert access["profile"] == "default"
    assert access["token_kind"] == "lwa"
    for line in lines:
        assert "configured-secret-value" not in line
        assert "leaked" not in line


async def run_proxy(
    tmp_path: Path, emulator: TestServer, env: dict[str, str], *args: str
) -> tuple[str, str]:
    """Starts `spapi-proxy run`, sends one forwarded request, stops it: its log and request id."""
    config = EmulatorConfig()
    port = free_port()
    config_file = write_config(tmp_path, emulator, port)
    process = await asyncio.create_subprocess_exec(
        SCRIPT,
        "run",
        "--config",
        str(config_file),
        *args,
        env={**lwa_environment(config), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_healthy(port, process)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{ORDERS_TEST_CASE_200}") as response,
        ):
            assert response.status == 200
            request_id = response.headers["X-Request-Id"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, output.decode()
    return output.decode(), request_id


async def test_run_writes_json_lines_with_the_access_lines_fields(
    emulator: TestServer, tmp_path: Path
) -> None:
    log, request_id = await run_proxy(tmp_path, emulator, {"SPAPI_PROXY_LOGGING_FORMAT": "json"})

    entries = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    (access,) = [
        e for e in entries if e["logger"] == ACCESS_LOGGER and e["path"] != "/_proxy/health"
    ]
    assert access["method"] == "GET"
    assert access["path"] == "/orders/v0/orders"
    assert access["status"] == 200
    assert access["operation"] == "getOrders"
    assert access["profile"] == "default"
    assert access["token_kind"] == "lwa"
    assert access["request_id"] == request_id
    assert access["amazon_request_id"]
    assert not any(e["level"] == "DEBUG" for e in entries)  # INFO by default
    config = EmulatorConfig()
    assert config.client_secret not in log
    assert config.refresh_token not in log


async def test_the_level_comes_from_the_environment_and_log_level_overrides_it(
    emulator: TestServer, tmp_path: Path
) -> None:
    quiet, _ = await run_proxy(tmp_path, emulator, {"SPAPI_PROXY_LOGGING_LEVEL": "warning"})
    assert "GET /orders/v0/orders 200" not in quiet  # the access line is INFO

    loud, _ = await run_proxy(
        tmp_path, emulator, {"SPAPI_PROXY_LOGGING_LEVEL": "warning"}, "--log-level", "DEBUG"
    )
    assert "GET /orders/v0/orders 200" in loud
    assert " DEBUG " in loud
