"""Credential sources under attack: hostile LWA, STS and Tokens API answers, and the AWS keys.

Each fake is a real local server: the emulator with a middleware that misbehaves on cue (as
LWA or the Tokens API), or a small aiohttp app that answers AssumeRole the way a broken STS or
middlebox would. Nothing inside the proxy is mocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Middleware

from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.render import render_masked
from proxy.config.settings import AwsSettings, Settings
from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.emulator.sigv4 import KeyMaterial
from proxy.secret import Secret
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    settings_for,
    url_of,
)
from tests.support.clock import FakeClock
from tests.support.rawhttp import RawResponse, build_request, raw_request

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LWA_PATH = "/auth/o2/token"
RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"
ADDRESS = "/orders/v0/orders/TEST_CASE_200/address"
MIB = 1024 * 1024

# What a hostile STS puts in its malformed answers: none of it may reach a log or a body.
LEAKED_SECRET_KEY = "hostileSTSsecretKEY/0123456789abcdefghij"
LEAKED_SESSION_TOKEN = "IQoJhostileSTSsessionTOKEN0123456789abcdefghijklmnop"
ROLE_ARN = "arn:aws:iam::123456789012:role/spapi-proxy"
STS_KEY_ID = "AKIAHOSTILETEST00001"
STS_SECRET = "configured/aws/secret/for/hostile/sts"


async def emulator_with(
    aiohttp_server: ServerFactory, config: EmulatorConfig, fault: Middleware
) -> TestServer:
    app = create_emulator_app(config)
    app.middlewares.append(fault)
    return await aiohttp_server(app)


async def get(port: int, target: str = ORDERS_TEST_CASE_200) -> RawResponse:
    return await raw_request("127.0.0.1", port, build_request("GET", target))


Answer = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def on_path(path: str, answer: Answer) -> Middleware:
    """A middleware: `answer` handles `path` (given the real handler), the rest passes."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == path:
            return await answer(request, handler)
        return await handler(request)

    return middleware


async def real_json(request: web.Request, handler: Handler) -> dict[str, object]:
    response = await handler(request)
    assert isinstance(response, web.Response)
    assert isinstance(response.body, bytes)
    document = json.loads(response.body)
    assert isinstance(document, dict)
    return document


def with_fields(
    fields: dict[str, object],
) -> Callable[[web.Request, Handler], Awaitable[web.Response]]:
    """The emulator's JSON answer with ``fields`` set over its own."""

    async def answer(request: web.Request, handler: Handler) -> web.Response:
        document = {**await real_json(request, handler), **fields}
        return web.Response(text=json.dumps(document), content_type="application/json")

    return answer


async def proxy_with_lwa(
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    start_proxy: StartProxy,
    answer: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]],
    path: str = LWA_PATH,
) -> tuple[int, TestServer]:
    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, on_path(path, answer))
    proxy = await start_proxy(settings_for(emulator, config))
    return proxy.port, emulator


def assert_no_leak(texts: list[str | bytes], *secrets: str) -> None:
    for text in texts:
        plain = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for secret in secrets:
            assert secret not in plain, f"{secret[:12]}… leaked"


# --- 1. STS answers that aren't AWS's XML ------------------------------------------------------

CREDENTIALS_XML = (
    "<Credentials>"
    "<AccessKeyId>ASIAHOSTILE000000001</AccessKeyId>"
    f"<SecretAccessKey>{LEAKED_SECRET_KEY}</SecretAccessKey>"
    f"<SessionToken>{LEAKED_SESSION_TOKEN}</SessionToken>"
    "<Expiration>{expiration}</Expiration>"
    "</Credentials>"
)


def assume_role_xml(credentials: str) -> str:
    return (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<AssumeRoleResult><AssumedRoleUser>"
        "<AssumedRoleId>AROAHOSTILE:spapi-proxy</AssumedRoleId>"
        "<Arn>arn:aws:sts::123456789012:assumed-role/spapi-proxy/spapi-proxy</Arn>"
        f"</AssumedRoleUser>{credentials}</AssumeRoleResult>"
        "<ResponseMetadata><RequestId>c0ffee</RequestId></ResponseMetadata>"
        "</AssumeRoleResponse>"
    )


MALFORMED_STS_ANSWERS = {
    "cut inside Expiration": (
        "text/xml",
        assume_role_xml(CREDENTIALS_XML.format(expiration="2030-01-01T00:00:00Z")).split("2030-01")[
            0
        ]
        + "2030-01",
    ),
    "an HTML page": (
        "text/html",
        f"<html><body><h1>Proxy login</h1><p>{LEAKED_SECRET_KEY} {LEAKED_SESSION_TOKEN}</p>"
        "</body></html>",
    ),
    "no Credentials element": (
        "text/xml",
        assume_role_xml(f"<Other>{LEAKED_SECRET_KEY} {LEAKED_SESSION_TOKEN}</Other>"),
    ),
    "a bad Expiration": (
        "text/xml",
        assume_role_xml(CREDENTIALS_XML.format(expiration="not-a-date")),
    ),
    "a session token with a line break": (
        "text/xml",
        assume_role_xml(
            CREDENTIALS_XML.format(expiration="2030-01-01T00:00:00Z").replace(
                LEAKED_SESSION_TOKEN, LEAKED_SESSION_TOKEN + "&#13;&#10;X-Injected: 1"
            )
        ),
    ),
}


async def hostile_sts(aiohttp_server: ServerFactory, handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_post("/", handler)
    return await aiohttp_server(app)


def with_hostile_sts(settings: Settings, sts: TestServer, timeout_s: float = 10.0) -> Settings:
    aws = AwsSettings(
        access_key_id=STS_KEY_ID,
        secret_access_key=Secret(STS_SECRET),
        role_arn=ROLE_ARN,
        sts_endpoint=url_of(sts),
        timeout_s=timeout_s,
    )
    return dataclasses.replace(settings, aws=aws)


@pytest.mark.parametrize("shape", list(MALFORMED_STS_ANSWERS))
async def test_sts_answer_that_is_not_aws_xml_is_503_and_leaks_nothing(
    shape: str,
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    content_type, text = MALFORMED_STS_ANSWERS[shape]

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=text, content_type=content_type)

    sts = await hostile_sts(aiohttp_server, answer)
    proxy = await start_proxy(with_hostile_sts(settings_for(emulator, emulator_config), sts))

    response = await get(proxy.port)
    ready = await get(proxy.port, "/_proxy/ready")

    assert response.status == 503, response.body
    assert response.header("x-spapi-proxy-error") == "StsUnavailable"
    (error,) = json.loads(response.body)["errors"]
    assert error["code"] == "StsUnavailable"
    assert ROLE_ARN in error["message"]
    assert ready.status == 503
    assert_no_leak(
        [response.body, ready.body, caplog.text], LEAKED_SECRET_KEY, LEAKED_SESSION_TOKEN
    )


# --- 4. compressed credential answers ----------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_lwa_answer_compressed_by_lwa_or_a_middlebox_still_gives_a_token(
    encoding: str, aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    async def compressed(request: web.Request, handler: Handler) -> web.Response:
        body = json.dumps(await real_json(request, handler)).encode()
        packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
        return web.Response(
            body=packed,
            headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
        )

    port, _ = await proxy_with_lwa(aiohttp_server, clock, start_proxy, compressed)
    response = await get(port)
    assert response.status == 200, response.body


async def test_tokens_api_answer_gzipped_still_gives_an_rdt(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    asked_for: list[str] = []

    async def gzipped(request: web.Request, handler: Handler) -> web.Response:
        asked_for.append(request.headers.get("Accept-Encoding", ""))
        body = json.dumps(await real_json(request, handler)).encode()
        return web.Response(
            body=gzip.compress(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    port, emulator = await proxy_with_lwa(aiohttp_server, clock, start_proxy, gzipped, RDT_PATH)
    response = await get(port, ADDRESS)
    assert response.status == 200, response.body
    sent = [r.header("x-amz-access-token") for r in emulator_state(emulator).received]
    assert any(token and token[0].startswith("Atz.sprdt|") for token in sent)
    # Not asked for compressed in the first place.
    assert asked_for == ["identity"]


# --- 6. secrets echoed by LWA, STS or the Tokens API -------------------------------------------


async def test_lwa_error_quoting_the_client_secret_or_refresh_token_masks_them_in_bodies(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    config = EmulatorConfig(clock=clock)
    secret, refresh = config.client_secret, config.refresh_token

    async def echo(request: web.Request, handler: Handler) -> web.Response:
        await request.read()
        description = f"client_secret {secret} does not match refresh token {refresh}"
        return web.json_response({"error": secret, "error_description": description}, status=400)

    port, _ = await proxy_with_lwa(aiohttp_server, clock, start_proxy, echo)
    response = await get(port)
    ready = await get(port, "/_proxy/ready")

    assert response.status == 502
    assert response.header("x-spapi-proxy-error") == "LwaRejected"
    assert ready.status == 503
    assert_no_leak([response.body, ready.body], secret, refresh, "emulator-refresh-token")
    assert "***" in json.loads(response.body)["errors"][0]["message"]


async def test_sts_error_quoting_the_configured_aws_secret_masks_it_in_bodies(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        xml = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
            "<Type>Sender</Type><Code>SignatureDoesNotMatch</Code>"
            f"<Message>expected signature made with {STS_SECRET}</Message>"
            "</Error><RequestId>c0ffee</RequestId></ErrorResponse>"
        )
        return web.Response(text=xml, status=403, content_type="text/xml")

    sts = await hostile_sts(aiohttp_server, refuse)
    proxy = await start_proxy(with_hostile_sts(settings_for(emulator, emulator_config), sts))
    response = await get(proxy.port)
    ready = await get(proxy.port, "/_proxy/ready")

    assert response.status == 502
    assert response.header("x-spapi-proxy-error") == "StsRejected"
    assert_no_leak([response.body, ready.body], STS_SECRET)


async def test_tokens_api_error_quoting_a_plain_access_token_masks_it_in_the_body(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    """An LWA token not shaped like Amazon's (`Atza|…`) is still a secret the body must hide."""
    plain_token = "plain-access-token-0123456789abcdef"

    @web.middleware
    async def fault(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == LWA_PATH:
            await request.read()
            return web.json_response({"access_token": plain_token, "expires_in": 3600})
        if request.path == RDT_PATH:
            quoted = request.headers.get("x-amz-access-token", "")
            error = {"code": "Unauthorized", "message": f"Access token {quoted} is not valid"}
            return web.json_response({"errors": [error]}, status=403)
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, fault)
    proxy = await start_proxy(settings_for(emulator, config))
    response = await get(proxy.port, ADDRESS)

    assert response.status == 403
    assert response.header("x-spapi-proxy-error") == "RdtRejected"
    assert_no_leak([response.body], plain_token)


# --- 10. credential answers capped -------------------------------------------------------------


def padded_token_answer(document: dict[str, object], size: int) -> tuple[bytes, bytes, bytes]:
    """A valid token answer made `size` bytes long by one padding field: head, filler, tail."""
    head = json.dumps(document)[:-1].encode() + b', "padding": "'
    tail = b'"}'
    return head, b"x" * (size - len(head) - len(tail)), tail


async def stream_padded(
    request: web.Request, document: dict[str, object], with_length: bool
) -> web.StreamResponse:
    head, filler, tail = padded_token_answer(document, 3 * MIB)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if with_length:
        response.content_length = len(head) + len(filler) + len(tail)
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        await response.write(head)
        for start in range(0, len(filler), 64 * 1024):
            await response.write(filler[start : start + 64 * 1024])
        await response.write(tail)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the proxy hung up at its cap, as it should
    return response


@pytest.mark.parametrize("with_length", [False, True], ids=["chunked", "content-length"])
async def test_lwa_answer_over_one_mib_is_refused_as_lwa_unavailable(
    with_length: bool, aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    async def huge(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await stream_padded(request, await real_json(request, handler), with_length)

    port, _ = await proxy_with_lwa(aiohttp_server, clock, start_proxy, huge)
    response = await get(port)
    assert response.status == 503, response.body
    assert response.header("x-spapi-proxy-error") == "LwaUnavailable"
    assert "1 MiB" in json.loads(response.body)["errors"][0]["message"]


async def test_endless_lwa_answer_is_cut_off_at_the_cap_not_read_to_the_timeout(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    written = 0

    async def endless(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal written
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        piece = b" " * (64 * 1024)
        try:
            await response.write(b'{"access_token": "Atza|x", "padding": "')
            while written < 256 * MIB:  # a bound for the test itself, far past the cap
                await response.write(piece)
                written += len(piece)
        except ConnectionError:
            pass  # the proxy hung up
        return response

    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, on_path(LWA_PATH, endless))
    settings = settings_for(emulator, config)
    lwa = dataclasses.replace(settings.lwa, timeout_s=5.0)
    proxy = await start_proxy(dataclasses.replace(settings, lwa=lwa))

    response = await get(proxy.port)

    assert response.status == 503
    assert "1 MiB" in json.loads(response.body)["errors"][0]["message"]
    # What the proxy took in stopped at the cap; the rest is what the sockets' buffers held.
    assert written < 32 * MIB, written


@pytest.mark.parametrize("with_length", [False, True], ids=["chunked", "content-length"])
async def test_tokens_api_answer_over_one_mib_is_refused_as_rdt_rejected(
    with_length: bool, aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    async def huge(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await stream_padded(request, await real_json(request, handler), with_length)

    port, _ = await proxy_with_lwa(aiohttp_server, clock, start_proxy, huge, RDT_PATH)
    response = await get(port, ADDRESS)
    assert response.status == 502, response.body
    assert response.header("x-spapi-proxy-error") == "RdtRejected"
    assert "1 MiB" in json.loads(response.body)["errors"][0]["message"]


# --- 11. values from LWA, STS and the Tokens API checked ---------------------------------------

BAD_LWA_VALUES: dict[str, dict[str, object]] = {
    "expires_in 0": {"expires_in": 0},
    "expires_in -100": {"expires_in": -100},
    "expires_in NaN": {"expires_in": float("nan")},
    "expires_in Infinity": {"expires_in": float("inf")},
    "expires_in text": {"expires_in": "soon"},
    "token with CR LF": {"access_token": "Atza|abc\r\nX-Injected: 1"},
    "token with NUL": {"access_token": "Atza|abc\x00def"},
    "token with a space": {"access_token": "Atza|abc def"},
    "token not ASCII": {"access_token": "Atza|abcé"},
    "empty token": {"access_token": ""},
}


@pytest.mark.parametrize("case", list(BAD_LWA_VALUES))
async def test_lwa_token_or_lifetime_out_of_shape_is_lwa_unavailable(
    case: str, aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    bad = with_fields(BAD_LWA_VALUES[case])
    port, emulator = await proxy_with_lwa(aiohttp_server, clock, start_proxy, bad)
    response = await get(port)
    assert response.status == 503, response.body
    assert response.header("x-spapi-proxy-error") == "LwaUnavailable"
    # Nothing was sent upstream with a broken token.
    assert not [r for r in emulator_state(emulator).received if r.raw_target.startswith("/orders")]


async def test_lwa_token_with_a_tiny_lifetime_is_not_fetched_for_every_request(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    fetches = 0

    async def short_lived(request: web.Request, handler: Handler) -> web.Response:
        nonlocal fetches
        fetches += 1
        document = {**await real_json(request, handler), "expires_in": 0.001}
        return web.Response(text=json.dumps(document), content_type="application/json")

    port, _ = await proxy_with_lwa(aiohttp_server, clock, start_proxy, short_lived)
    for _ in range(12):  # within the emulator's burst of 15
        assert (await get(port)).status == 200
        clock.advance(0.05)
    assert fetches == 1


BAD_RDT_VALUES: dict[str, dict[str, object]] = {
    "expiresIn 0": {"expiresIn": 0},
    "expiresIn NaN": {"expiresIn": float("nan")},
    "token with CR LF": {"restrictedDataToken": "Atz.sprdt|abc\r\nX-Injected: 1"},
    "token with NUL": {"restrictedDataToken": "Atz.sprdt|abc\x00"},
}


@pytest.mark.parametrize("case", list(BAD_RDT_VALUES))
async def test_rdt_token_or_lifetime_out_of_shape_is_rdt_rejected(
    case: str, aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    bad = with_fields(BAD_RDT_VALUES[case])
    port, emulator = await proxy_with_lwa(aiohttp_server, clock, start_proxy, bad, RDT_PATH)
    response = await get(port, ADDRESS)
    assert response.status == 502, response.body
    assert response.header("x-spapi-proxy-error") == "RdtRejected"
    assert not [r for r in emulator_state(emulator).received if r.raw_target == ADDRESS]


# --- 12. the timeouts bound the whole fetch ----------------------------------------------------


async def test_hanging_lwa_gives_503_within_its_timeout_plus_one_second(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    released = asyncio.Event()

    async def hang(request: web.Request, handler: Handler) -> web.StreamResponse:
        await released.wait()
        return await handler(request)

    config = EmulatorConfig(clock=clock)
    emulator = await emulator_with(aiohttp_server, config, on_path(LWA_PATH, hang))
    settings = settings_for(emulator, config)
    lwa = dataclasses.replace(settings.lwa, timeout_s=1.0)
    proxy = await start_proxy(dataclasses.replace(settings, lwa=lwa))
    try:
        started = time.monotonic()
        response = await get(proxy.port)
        elapsed = time.monotonic() - started
    finally:
        released.set()
    assert response.status == 503
    assert response.header("x-spapi-proxy-error") == "LwaUnavailable"
    assert elapsed < 1.0 + 1.0, elapsed


async def test_hanging_sts_gives_503_within_its_timeout_plus_one_second(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
) -> None:
    released = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(status=503)

    sts = await hostile_sts(aiohttp_server, hang)
    settings = with_hostile_sts(settings_for(emulator, emulator_config), sts, timeout_s=1.0)
    proxy = await start_proxy(settings)
    try:
        started = time.monotonic()
        response = await get(proxy.port)
        elapsed = time.monotonic() - started
    finally:
        released.set()
    assert response.status == 503
    assert response.header("x-spapi-proxy-error") == "StsUnavailable"
    assert elapsed < 1.0 + 1.0, elapsed


# --- 16. temporary keys keep their session token -----------------------------------------------

TEMP_KEY_ID = "ASIATEMPORARYKEY0001"
TEMP_SECRET = "temporary/secret/access/key/0123456789"
TEMP_TOKEN = "IQoJtemporarySessionToken0123456789abcdefghijklmnopqrstuvwxyz"


def temporary_key_lookup(access_key_id: str) -> KeyMaterial | None:
    return KeyMaterial(TEMP_SECRET, TEMP_TOKEN) if access_key_id == TEMP_KEY_ID else None


@pytest.fixture
async def temp_key_emulator(
    aiohttp_server: ServerFactory, clock: FakeClock
) -> tuple[TestServer, EmulatorConfig]:
    config = EmulatorConfig(clock=clock, extra_credentials=temporary_key_lookup)
    return await aiohttp_server(create_emulator_app(config)), config


def settings_from_environment(
    tmp_path: Path, emulator: TestServer, config: EmulatorConfig
) -> Settings:
    """The aws section switched on with every key left to its default, as a user would."""
    base = url_of(emulator)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"upstream: {{endpoint: '{base}'}}\n"
        f"lwa: {{token_url: '{base}{LWA_PATH}'}}\n"
        "aws: {}\n"
        "rate_limits: {enabled: false}\n"
    )
    environ = {
        "LWA_CLIENT_ID": config.client_id,
        "LWA_CLIENT_SECRET": config.client_secret,
        "LWA_REFRESH_TOKEN": config.refresh_token,
        "AWS_ACCESS_KEY_ID": TEMP_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEMP_SECRET,
        "AWS_SESSION_TOKEN": TEMP_TOKEN,
    }
    return load_settings(str(path), environ)


async def test_temporary_keys_from_the_environment_sign_with_their_session_token(
    tmp_path: Path,
    temp_key_emulator: tuple[TestServer, EmulatorConfig],
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator, config = temp_key_emulator
    settings = settings_from_environment(tmp_path, emulator, config)
    proxy = await start_proxy(settings)

    response = await get(proxy.port)

    assert response.status == 200, response.body
    (received,) = [r for r in emulator_state(emulator).received if r.raw_target.startswith("/o")]
    assert received.header("x-amz-security-token") == [TEMP_TOKEN]
    assert_no_leak([caplog.text], TEMP_TOKEN, TEMP_SECRET)


async def test_assume_role_with_temporary_keys_sends_their_session_token_to_sts(
    temp_key_emulator: tuple[TestServer, EmulatorConfig], start_proxy: StartProxy
) -> None:
    emulator, config = temp_key_emulator
    aws = AwsSettings(
        access_key_id=TEMP_KEY_ID,
        secret_access_key=Secret(TEMP_SECRET),
        session_token=Secret(TEMP_TOKEN),
        role_arn=ROLE_ARN,
        sts_endpoint=url_of(emulator),
    )
    proxy = await start_proxy(settings_for(emulator, config, aws=aws))

    response = await get(proxy.port)

    assert response.status == 200, response.body
    assert emulator_state(emulator).sts_calls == 1


def test_check_config_says_which_source_signs_and_masks_the_session_token(
    tmp_path: Path, temp_key_emulator: tuple[TestServer, EmulatorConfig]
) -> None:
    emulator, config = temp_key_emulator
    text = render_masked(settings_from_environment(tmp_path, emulator, config))
    assert TEMP_TOKEN not in text
    assert TEMP_SECRET not in text
    assert "session_token: '***'" in text
    assert "# aws: signing with keys from the config (temporary, with a session token)" in text


def test_check_config_names_assume_role_and_the_default_chain(tmp_path: Path) -> None:
    base = {"LWA_CLIENT_ID": "id", "LWA_CLIENT_SECRET": "secret1234", "LWA_REFRESH_TOKEN": "x"}
    path = tmp_path / "config.yaml"
    path.write_text("aws: {}\n")
    chain = render_masked(load_settings(str(path), base))
    assert "# aws: signing with keys from botocore's default chain" in chain
    role = render_masked(load_settings(str(path), {**base, "SPAPI_ROLE_ARN": ROLE_ARN}))
    assert f"# aws: signing with STS AssumeRole {ROLE_ARN}" in role


async def test_sts_answer_gzipped_by_a_middlebox_still_gives_credentials(
    aiohttp_server: ServerFactory, clock: FakeClock, start_proxy: StartProxy
) -> None:
    issued = "ASIAHOSTILE000000001"
    config = EmulatorConfig(
        clock=clock,
        extra_credentials=lambda key: (
            KeyMaterial(LEAKED_SECRET_KEY, LEAKED_SESSION_TOKEN) if key == issued else None
        ),
    )
    emulator = await aiohttp_server(create_emulator_app(config))
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock() + 3600))
    xml = assume_role_xml(CREDENTIALS_XML.format(expiration=expiration)).encode()

    async def gzipped(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=gzip.compress(xml),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/xml"},
        )

    sts = await hostile_sts(aiohttp_server, gzipped)
    proxy = await start_proxy(with_hostile_sts(settings_for(emulator, config), sts))
    response = await get(proxy.port)
    assert response.status == 200, response.body


@pytest.mark.parametrize(
    ("key_id", "token", "says"),
    [
        ("AKIALONGTERMKEY00001", TEMP_TOKEN, "long-term key (AKIA…)"),
        (TEMP_KEY_ID, "", "temporary key (ASIA…)"),
    ],
)
def test_a_key_and_session_token_aws_would_refuse_together_are_a_config_error(
    key_id: str, token: str, says: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("aws: {}\n")
    environ = {
        "LWA_CLIENT_ID": "id",
        "LWA_CLIENT_SECRET": "secret1234",
        "LWA_REFRESH_TOKEN": "x",
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": TEMP_SECRET,
        "AWS_SESSION_TOKEN": token,
    }
    with pytest.raises(ConfigError) as raised:
        load_settings(str(path), environ)
    assert raised.value.key == "aws.session_token"
    assert says in raised.value.message
    assert TEMP_TOKEN not in str(raised.value)


def test_a_profile_with_its_own_access_key_does_not_inherit_the_session_token(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "aws: {}\n"
        "profiles:\n"
        "  other:\n"
        "    aws: {access_key_id: AKIAOTHERLONGTERM001, secret_access_key: other/secret/key}\n"
    )
    environ = {
        "LWA_CLIENT_ID": "id",
        "LWA_CLIENT_SECRET": "secret1234",
        "LWA_REFRESH_TOKEN": "x",
        "AWS_ACCESS_KEY_ID": TEMP_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEMP_SECRET,
        "AWS_SESSION_TOKEN": TEMP_TOKEN,
    }
    settings = load_settings(str(path), environ)
    assert settings.aws is not None
    assert settings.aws.session_token == Secret(TEMP_TOKEN)
    (other,) = settings.profiles
    assert other.aws is not None
    assert other.aws.session_token is None
