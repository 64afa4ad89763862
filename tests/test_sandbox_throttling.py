"""The sandbox's throttle (5 requests/s, burst 15) seen through the proxy, in real time.

SP-API's 429 is Amazon's answer, not the proxy's: it must reach the client unchanged and
without `x-spapi-proxy-error`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.config.settings import Settings
from proxy.emulator import EmulatorConfig
from tests.conftest import ORDERS_TEST_CASE_200, emulator_state, settings_for

REQUESTS = 30
WINDOW_S = 1.0
QUOTA_EXCEEDED = {
    "errors": [
        {"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}
    ]
}


class Listening(Protocol):
    @property
    def port(self) -> int | None: ...


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """The emulator's defaults: the sandbox rate and the wall clock, as users get them."""
    return EmulatorConfig()


async def test_thirty_requests_in_one_second_meet_the_sandbox_quota(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: Callable[[Settings], Awaitable[Listening]],
) -> None:
    assert (emulator_config.rate_per_s, emulator_config.burst) == (5.0, 15)
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    url = f"http://127.0.0.1:{proxy.port}{ORDERS_TEST_CASE_200}"
    answers: list[tuple[int, bytes, dict[str, str]]] = []
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        for n in range(REQUESTS):  # evenly spread over one second
            await asyncio.sleep(max(0.0, started + n * WINDOW_S / REQUESTS - time.monotonic()))
            async with session.get(url) as response:
                answers.append((response.status, await response.read(), dict(response.headers)))
        elapsed = time.monotonic() - started

    statuses = [status for status, _, _ in answers]
    assert statuses[:15] == [200] * 15, statuses  # the burst
    throttled = [(body, headers) for status, body, headers in answers if status == 429]
    assert throttled, statuses
    # No more got through than the bucket allows: the burst plus what refilled meanwhile.
    assert statuses.count(200) <= 15 + int(5 * elapsed) + 1, (statuses, elapsed)
    for body, headers in throttled:
        assert json.loads(body) == QUOTA_EXCEEDED
        assert "x-spapi-proxy-error" not in {name.lower() for name in headers}
        assert headers["x-amzn-RequestId"]
    # Each answer is the one the emulator gave, in order: the proxy neither retried nor hid one.
    received = [r.status for r in emulator_state(emulator).received]
    assert received == statuses
