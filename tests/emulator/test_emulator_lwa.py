"""The emulator's LWA token endpoint: both grants, real error bodies, expiring tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.emulator.tokens import TokenKind
from tests.emulator.conftest import Emulator


async def _post(emu: Emulator, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with emu.client.post("/auth/o2/token", data=form) as response:
        assert response.headers["x-amzn-RequestId"]
        return response.status, await response.json()


def _client(emu: Emulator) -> dict[str, str]:
    return {"client_id": emu.config.client_id, "client_secret": emu.config.client_secret}


async def test_refresh_grant_returns_a_new_token_each_call(emu: Emulator) -> None:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": emu.config.refresh_token,
        **_client(emu),
    }
    status, first = await _post(emu, form)
    _, second = await _post(emu, form)
    assert status == 200
    assert first["access_token"].startswith("Atza|")
    assert first["access_token"] != second["access_token"]
    assert first["token_type"] == "bearer"
    assert first["expires_in"] == 3600
    assert first["refresh_token"] == emu.config.refresh_token
    assert emu.state.lwa_calls["refresh_token"] == 2
    issued = emu.state.tokens.lookup(first["access_token"])
    assert issued is not None
    assert issued.kind is TokenKind.SELLER


async def test_client_credentials_grant_is_grantless_with_scope(emu: Emulator) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "sellingpartnerapi::notifications",
        **_client(emu),
    }
    status, body = await _post(emu, form)
    assert status == 200
    assert "refresh_token" not in body
    issued = emu.state.tokens.lookup(body["access_token"])
    assert issued is not None
    assert (issued.kind, issued.scope) == (TokenKind.GRANTLESS, "sellingpartnerapi::notifications")
    assert emu.state.lwa_calls["client_credentials"] == 1


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"refresh_token": "Atzr|wrong"}, 400, "invalid_grant"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "amzn1.application-oa2-client.other"}, 401, "invalid_client"),
        ({"scope": "sellingpartnerapi::notifications"}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"refresh_token": ""}, 400, "invalid_request"),
    ],
)
async def test_refresh_grant_errors(
    emu: Emulator, change: dict[str, str], status: int, error: str
) -> None:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": emu.config.refresh_token,
        **_client(emu),
        **change,
    }
    got_status, body = await _post(emu, form)
    assert (got_status, body["error"]) == (status, error)
    assert body["error_description"]
    assert emu.config.client_secret not in json.dumps(body)


@pytest.mark.parametrize(
    ("scope", "error"),
    [
        ("", "invalid_request"),
        ("sellingpartnerapi::everything", "invalid_scope"),
    ],
)
async def test_client_credentials_scope_errors(emu: Emulator, scope: str, error: str) -> None:
    form = {"grant_type": "client_credentials", "scope": scope, **_client(emu)}
    status, body = await _post(emu, form)
    assert (status, body["error"]) == (400, error)


async def test_json_body_is_accepted(emu: Emulator) -> None:
    payload = {
        "grant_type": "refresh_token",
        "refresh_token": emu.config.refresh_token,
        **_client(emu),
    }
    async with emu.client.post("/auth/o2/token", json=payload) as response:
        assert response.status == 200


async def test_token_expires_with_the_configured_lifetime(make_emu: Any) -> None:
    emu: Emulator = await make_emu(token_lifetime_s=3)
    token = await emu.token()
    issued = emu.state.tokens.lookup(token)
    assert issued is not None
    assert not emu.state.tokens.is_expired(issued)
    emu.clock.advance(3)
    assert emu.state.tokens.is_expired(issued)


async def test_get_is_not_allowed(emu: Emulator) -> None:
    async with emu.client.get("/auth/o2/token") as response:
        assert response.status == 405
