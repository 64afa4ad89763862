"""The emulator's STS: boto3 can AssumeRole against it; bad signatures get AWS's XML errors."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest
from aiohttp.test_utils import TestServer
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from proxy.emulator import EMULATOR_STATE, EmulatorConfig, create_emulator_app
from tests.emulator.conftest import Emulator, sign_headers

ROLE = "arn:aws:iam::123456789012:role/spapi-emulator"
CONFIG = EmulatorConfig()


def _assume_role(url: str, key_id: str, secret: str, **extra: Any) -> dict[str, Any]:
    client = boto3.client(
        "sts",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    return dict(client.assume_role(RoleArn=ROLE, RoleSessionName="spapi-proxy", **extra))


@pytest.fixture
async def server(aiohttp_server: Any) -> TestServer:
    started: TestServer = await aiohttp_server(create_emulator_app(CONFIG))
    return started


async def test_boto3_assume_role_works(server: TestServer) -> None:
    url = str(server.make_url("/"))
    result = await asyncio.to_thread(
        _assume_role, url, CONFIG.aws_access_key_id, CONFIG.aws_secret_access_key
    )
    creds = result["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert creds["SessionToken"]
    assert result["AssumedRoleUser"]["Arn"] == (
        "arn:aws:sts::123456789012:assumed-role/spapi-emulator/spapi-proxy"
    )
    state = server.app[EMULATOR_STATE]
    assert state.sts_calls == 1
    # the SP-API side now accepts these temporary keys
    material = state.credentials.lookup(creds["AccessKeyId"])
    assert material is not None
    assert material.session_token == creds["SessionToken"]


async def test_wrong_secret_is_signature_does_not_match(server: TestServer) -> None:
    url = str(server.make_url("/"))
    with pytest.raises(ClientError) as raised:
        await asyncio.to_thread(_assume_role, url, CONFIG.aws_access_key_id, "not-the-secret")
    error = raised.value.response
    assert error["Error"]["Code"] == "SignatureDoesNotMatch"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_unknown_key_is_invalid_client_token_id(server: TestServer) -> None:
    url = str(server.make_url("/"))
    with pytest.raises(ClientError) as raised:
        await asyncio.to_thread(_assume_role, url, "AKIAUNKNOWNKEY000000", "x")
    assert raised.value.response["Error"]["Code"] == "InvalidClientTokenId"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_bad_duration_is_validation_error(server: TestServer) -> None:
    url = str(server.make_url("/"))
    with pytest.raises(ClientError) as raised:
        await asyncio.to_thread(
            _assume_role,
            url,
            CONFIG.aws_access_key_id,
            CONFIG.aws_secret_access_key,
            DurationSeconds=50000,
        )
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_bad_role_arn_is_validation_error(emu: Emulator, iam: Credentials) -> None:
    body = b"Action=AssumeRole&Version=2011-06-15&RoleArn=not-an-arn&RoleSessionName=s1"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    sent = sign_headers("POST", emu.base + "/", headers, body, iam, service="sts")
    response = await emu.send("POST", "/", sent, body)
    text = await response.text()
    assert response.status == 400
    assert "<Code>ValidationError</Code>" in text
    assert text.startswith("<ErrorResponse")


async def test_sts_lifetime_sets_expiration(make_emu: Any, iam: Credentials) -> None:
    emu: Emulator = await make_emu(sts_lifetime_s=5)
    body = (
        b"Action=AssumeRole&Version=2011-06-15&RoleSessionName=s1&RoleArn="
        b"arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdemo"
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    sent = sign_headers("POST", emu.base + "/", headers, body, iam, service="sts")
    response = await emu.send("POST", "/", sent, body)
    assert response.status == 200
    key_id = (await response.text()).split("<AccessKeyId>")[1].split("<")[0]
    assert emu.state.credentials.lookup(key_id) is not None
    emu.clock.advance(5)
    assert emu.state.credentials.lookup(key_id) is None
    assert emu.state.credentials.is_expired_session(key_id)
