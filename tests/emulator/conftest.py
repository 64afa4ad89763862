"""Shared helpers for the emulator's tests: a started emulator (``emu``) and a botocore signer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import yarl
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.emulator import EMULATOR_STATE, EmulatorConfig, EmulatorState, create_emulator_app
from tests.support.clock import FakeClock

AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@dataclass
class Emulator:
    client: TestClient[web.Request, web.Application]
    config: EmulatorConfig
    clock: FakeClock
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = str(self.client.make_url("/")).rstrip("/")

    @property
    def state(self) -> EmulatorState:
        return self.client.app[EMULATOR_STATE]

    async def token(self, **form: str) -> str:
        """A fresh LWA access token (refresh grant unless ``form`` says otherwise)."""
        data = form or {
            "grant_type": "refresh_token",
            "refresh_token": self.config.refresh_token,
        }
        data = {
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            **data,
        }
        async with self.client.post("/auth/o2/token", data=data) as response:
            assert response.status == 200, await response.text()
            token: str = (await response.json())["access_token"]
            return token

    async def send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        sign: Credentials | None = None,
    ) -> ClientResponse:
        """Send ``target`` byte-exact (no yarl re-encoding); sign with botocore when asked."""
        sent = dict(headers or {})
        if sign is not None:
            sent = sign_headers(method, self.base + target, sent, body or b"", sign)
        response = await self.client.session.request(
            method, yarl.URL(self.base + target, encoded=True), headers=sent, data=body
        )
        await response.read()
        return response


def sign_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    creds: Credentials,
    *,
    service: str = "execute-api",
    region: str = "us-east-1",
) -> dict[str, str]:
    """Headers after botocore's SigV4Auth.add_auth (the oracle the verifier must agree with)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    SigV4Auth(creds, service, region).add_auth(request)
    return {k: v if isinstance(v, str) else v.decode() for k, v in request.headers.items()}


@pytest.fixture
def make_emu(aiohttp_client: AiohttpClient, clock: FakeClock) -> Callable[..., Awaitable[Emulator]]:
    async def make(**overrides: Any) -> Emulator:
        config = replace(EmulatorConfig(clock=clock), **overrides)
        client = await aiohttp_client(create_emulator_app(config))
        return Emulator(client, config, clock)

    return make


@pytest.fixture
async def emu(make_emu: Callable[..., Awaitable[Emulator]]) -> Emulator:
    return await make_emu()


@pytest.fixture
def iam(emu: Emulator) -> Credentials:
    return Credentials(emu.config.aws_access_key_id, emu.config.aws_secret_access_key)
