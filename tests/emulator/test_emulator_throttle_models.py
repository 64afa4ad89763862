"""`--throttle models`: each operation's rate and burst from the models' usage plans (the table
the proxy generates), instead of the sandbox's flat 5/s and burst 15."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from proxy.cli import build_parser, emulator_config_from
from proxy.emulator import EmulatorConfig
from tests.emulator.conftest import Emulator

MakeEmu = Callable[..., Awaitable[Emulator]]
CREATE_REPORT = "/reports/2021-06-30/reports"
REPORT_BODY = json.dumps(
    {"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": ["ATVPDKIKX0DER"]}
).encode()
ORDERS = "/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"


async def statuses(emu: Emulator, token: str, count: int) -> list[tuple[int, str | None]]:
    headers = {"x-amz-access-token": token, "content-type": "application/json"}
    seen = []
    for _ in range(count):
        response = await emu.send("POST", CREATE_REPORT, headers, REPORT_BODY)
        seen.append((response.status, response.headers.get("x-amzn-RateLimit-Limit")))
    return seen


async def test_models_throttle_gives_create_report_its_usage_plan(make_emu: MakeEmu) -> None:
    emu = await make_emu(throttle="models")
    token = await emu.token()
    # createReport: 0.0167/s, burst 15 in the Reports model
    seen = await statuses(emu, token, 16)
    assert seen[:15] == [(202, "0.0167")] * 15
    assert seen[15] == (429, None)
    emu.clock.advance(30)  # half a token at 0.0167/s (the sandbox's 5/s would have refilled)
    assert await statuses(emu, token, 1) == [(429, None)]
    emu.clock.advance(31)
    assert await statuses(emu, token, 1) == [(202, "0.0167")]

    # getOrders keeps its own bucket and plan (0.0167/s, burst 20: more than the sandbox's 15)
    orders = [
        (await emu.send("GET", ORDERS, {"x-amz-access-token": token})).status for _ in range(21)
    ]
    assert orders == [200] * 20 + [429]


async def test_sandbox_throttle_stays_the_default(make_emu: MakeEmu) -> None:
    emu = await make_emu()
    seen = await statuses(emu, await emu.token(), 16)
    assert seen == [(202, "5.0")] * 15 + [(429, None)]


def test_the_command_line_chooses_the_throttle() -> None:
    parser = build_parser()
    chosen = emulator_config_from(parser.parse_args(["emulator", "--throttle", "models"]))
    assert chosen.throttle == "models"
    default = emulator_config_from(parser.parse_args(["emulator"]))
    assert default == EmulatorConfig()
    demo = emulator_config_from(parser.parse_args(["demo", "--throttle", "models"]))
    assert demo.throttle == "models"
