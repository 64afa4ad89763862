"""The README's curl commands run a report and a feed end to end through `spapi-proxy demo`,
exactly as printed there, so the page and the emulator cannot drift apart."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.support.moto_sts import free_port
from tests.test_demo_cli import assert_no_secret, read_until, spapi_proxy, stop

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "### A report and a feed through the demo"
RUN_TIMEOUT_S = 60.0


def readme_commands() -> str:
    section = README.read_text(encoding="utf-8").split(HEADING, 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, f"README: no sh block under {HEADING!r}"
    return found.group(1)


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")),
    reason="the README's commands use curl and jq",
)
async def test_readme_curl_commands_run_a_report_and_a_feed_through_the_demo() -> None:
    port = free_port()
    async with spapi_proxy("demo", "--port", str(port)) as demo:
        await read_until(demo, "curl '")
        shell = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            readme_commands(),
            env={**os.environ, "PROXY": f"http://127.0.0.1:{port}"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(shell.communicate(), RUN_TIMEOUT_S)
        finally:
            if shell.returncode is None:
                shell.kill()
                await shell.wait()
        text = output.decode()
        assert shell.returncode == 0, text
        assert "item-name\titem-description\tlisting-id\tseller-sku" in text
        assert "Number of records processed\t\t2" in text
        assert_no_secret(text + await stop(demo))
