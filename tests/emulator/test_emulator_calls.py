"""GET/DELETE /_emulator/calls: what a user's code sent, for their tests to assert on."""

from __future__ import annotations

from tests.emulator.conftest import Emulator

ORDERS = "/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"


async def test_recorded_calls_list_method_path_operation_token_kind_and_status(
    emu: Emulator,
) -> None:
    token = await emu.token()
    await emu.send("GET", ORDERS, {"x-amz-access-token": token})
    await emu.send("GET", "/orders/v0/orders/123-1234567-1234567/address", {})

    async with emu.client.get("/_emulator/calls") as response:
        assert response.status == 200
        calls = await response.json()

    assert calls == [
        {
            "method": "GET",
            "path": "/orders/v0/orders",
            "query": "CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER",
            "operation": "getOrders",
            "tokenKind": "seller",
            "signatureOk": None,
            "status": 200,
        },
        {
            "method": "GET",
            "path": "/orders/v0/orders/123-1234567-1234567/address",
            "query": "",
            "operation": "getOrderAddress",
            "tokenKind": None,
            "signatureOk": None,
            "status": 403,
        },
    ]
    assert token not in str(calls)


async def test_delete_calls_forgets_what_was_recorded(emu: Emulator) -> None:
    token = await emu.token()
    await emu.send("GET", ORDERS, {"x-amz-access-token": token})

    async with emu.client.delete("/_emulator/calls") as response:
        assert response.status == 204
    async with emu.client.get("/_emulator/calls") as response:
        assert await response.json() == []
    assert not emu.state.received


async def test_calls_endpoint_answers_only_get_and_delete(emu: Emulator) -> None:
    async with emu.client.post("/_emulator/calls") as response:
        assert response.status == 405
