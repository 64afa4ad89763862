"""Egress through a forward proxy: upstream.egress_proxy, HTTPS_PROXY / HTTP_PROXY / NO_PROXY.

The end-to-end tests run a real tinyproxy (tests/support/tinyproxy.py) and read its log to
tell what went through it: on one machine the origin sees 127.0.0.1 either way.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.render import render_masked
from proxy.config.settings import ListenSettings, LwaSettings, Settings, UpstreamSettings
from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.http import EgressProxyError, UpstreamConnectError, UpstreamPool
from proxy.http.egress import (
    EgressProxy,
    EgressProxyInvalid,
    bypasses_proxy,
    egress_proxy_for,
    parse_proxy_url,
)
from proxy.secret import Secret
from proxy.server.app import create_app
from proxy.server.run import RunningServer
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    moto_aws_settings,
    moto_key_lookup,
    settings_for,
)
from tests.support.clock import FakeClock
from tests.support.moto_sts import MotoSts, free_port
from tests.support.rawhttp import RawResponse, build_request, raw_request
from tests.support.tinyproxy import running_tinyproxy

PROXY_USER, PROXY_PASSWORD = "egress-user", "egress-pass-4f7a9c"
CREDENTIALS = f"{PROXY_USER}:{PROXY_PASSWORD}"


async def fetch(proxy: RunningServer, target: str = ORDERS_TEST_CASE_200) -> RawResponse:
    return await raw_request("127.0.0.1", proxy.port or 0, build_request("GET", target))


def error_of(response: RawResponse) -> dict[str, str]:
    error: dict[str, str] = json.loads(response.body)["errors"][0]
    return error


def assert_no_proxy_password_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in [*caplog.get_records("setup"), *caplog.get_records("call")]:
        text = record.getMessage() + (record.exc_text or "")
        assert PROXY_PASSWORD not in text, f"the proxy's password was logged by {record.name}"


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(test_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "test-ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_server_context(test_ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
async def https_emulator(
    aiohttp_server: ServerFactory, emulator_config: EmulatorConfig, test_ca: trustme.CA
) -> TestServer:
    """The emulator as Amazon over HTTPS, its certificate for 127.0.0.1 and localhost."""
    context = tls_server_context(test_ca, "127.0.0.1", "localhost")
    return await aiohttp_server(create_emulator_app(emulator_config), ssl=context)


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment's proxy variables, cleared for every test by conftest; set per test."""
    return monkeypatch


def through(settings: Settings, egress_proxy: str | None, ca_file: str | None = None) -> Settings:
    upstream = dataclasses.replace(
        settings.upstream,
        egress_proxy=None if egress_proxy is None else Secret(egress_proxy),
        ca_bundle=ca_file,
    )
    return dataclasses.replace(settings, upstream=upstream)


def with_token_url_host(settings: Settings, host: str) -> Settings:
    """LWA called by another name of the same server (NO_PROXY can then tell it apart)."""
    lwa = settings.lwa
    token_url = lwa.token_url.replace("127.0.0.1", host)
    return dataclasses.replace(settings, lwa=dataclasses.replace(lwa, token_url=token_url))


# --- end to end, through tinyproxy -------------------------------------------------------------


async def test_https_upstream_goes_through_a_connect_tunnel_with_the_proxys_credentials(
    https_emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    ca_file: str,
    tmp_path: Path,
    no_proxy_variables: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = https_emulator.port
    assert port is not None
    with running_tinyproxy(tmp_path, connect_ports=(port,), credentials=CREDENTIALS) as tiny:
        settings = settings_for(https_emulator, emulator_config)
        proxy = await start_proxy(through(settings, tiny.url(CREDENTIALS), ca_file))
        first, second = await fetch(proxy), await fetch(proxy)
        assert (first.status, second.status) == (200, 200), first.body
        tunnels = [line for line in tiny.requests() if line.startswith("CONNECT ")]
    # LWA's token call and SP-API's connection, each in its own tunnel to the origin; the second
    # request reused the pooled tunnel.
    assert tunnels == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"] * 2
    received = emulator_state(https_emulator).received[-1]
    assert received.status == 200
    # The proxy's credentials went in the CONNECT only, never inside the tunnel to Amazon.
    assert received.header("proxy-authorization") == []
    assert_no_proxy_password_logged(caplog)


async def test_http_upstream_lwa_and_sts_go_through_the_proxy_in_absolute_form(
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    moto_sts: MotoSts,
    start_proxy: StartProxy,
    tmp_path: Path,
    no_proxy_variables: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = EmulatorConfig(clock=clock, extra_credentials=moto_key_lookup(moto_sts))
    emulator = await aiohttp_server(create_emulator_app(config))
    with running_tinyproxy(tmp_path, credentials=CREDENTIALS) as tiny:
        settings = settings_for(emulator, config, aws=moto_aws_settings(moto_sts))
        proxy = await start_proxy(through(settings, tiny.url(CREDENTIALS)))
        response = await fetch(proxy)
        assert response.status == 200, response.body
        lines = tiny.requests()
    origin = f"http://127.0.0.1:{emulator.port}"
    assert f"POST {origin}/auth/o2/token HTTP/1.1" in lines
    assert f"GET {origin}{ORDERS_TEST_CASE_200} HTTP/1.1" in lines
    assert any(line.startswith(f"POST {moto_sts.endpoint}") for line in lines), lines
    # The signed request reached the origin intact (the emulator checks the SigV4 signature).
    assert emulator_state(emulator).received[-1].status == 200
    assert_no_proxy_password_logged(caplog)


async def test_no_proxy_sends_a_host_around_the_environments_proxy(
    https_emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    ca_file: str,
    tmp_path: Path,
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    port = https_emulator.port
    assert port is not None
    settings = through(settings_for(https_emulator, emulator_config), None, ca_file)
    with running_tinyproxy(tmp_path, connect_ports=(port,)) as tiny:
        no_proxy_variables.setenv("HTTPS_PROXY", tiny.url())
        proxied = await start_proxy(settings)
        assert (await fetch(proxied)).status == 200
        assert len(tiny.requests()) == 2  # LWA's tunnel and SP-API's

        no_proxy_variables.setenv("NO_PROXY", "localhost, .example.com,127.0.0.1")
        direct = await start_proxy(settings)
        assert (await fetch(direct)).status == 200
        assert len(tiny.requests()) == 2


async def test_an_empty_egress_proxy_ignores_the_environments_proxy(
    https_emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    ca_file: str,
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    no_proxy_variables.setenv("https_proxy", f"http://127.0.0.1:{free_port()}")  # nothing there
    settings = settings_for(https_emulator, emulator_config)
    proxy = await start_proxy(through(settings, "", ca_file))
    assert (await fetch(proxy)).status == 200


@pytest.mark.parametrize("refusal", ["port not allowed", "wrong credentials", "nothing listening"])
async def test_a_refusing_egress_proxy_is_502_naming_it_by_host_and_port_only(
    refusal: str,
    https_emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    ca_file: str,
    tmp_path: Path,
    no_proxy_variables: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = https_emulator.port
    assert port is not None
    # LWA by another name, exempt by NO_PROXY, so the token comes and SP-API's tunnel is tried.
    no_proxy_variables.setenv("NO_PROXY", "localhost")
    settings = with_token_url_host(settings_for(https_emulator, emulator_config), "localhost")
    allowed = (443,) if refusal == "port not allowed" else (port,)
    with running_tinyproxy(tmp_path, connect_ports=allowed, credentials=CREDENTIALS) as tiny:
        address = tiny.address
        if refusal == "nothing listening":
            address = f"127.0.0.1:{free_port()}"
        given = PROXY_USER + ":wrong-password" if refusal == "wrong credentials" else CREDENTIALS
        proxy = await start_proxy(through(settings, f"http://{given}@{address}", ca_file))
        response = await fetch(proxy)
    assert response.status == 502, response.body
    assert response.header("x-spapi-proxy-error") == "UpstreamUnreachable"
    error = error_of(response)
    assert error["code"] == "UpstreamUnreachable"
    assert f"egress proxy {address}" in error["message"]
    if refusal == "wrong credentials":
        assert "refused the ones in its URL" in error["message"]
    text = response.body.decode()
    assert PROXY_USER not in text
    assert "wrong-password" not in text
    assert PROXY_PASSWORD not in text
    assert "egress_proxy" in error["details"]
    assert len(emulator_state(https_emulator).received) == 0  # SP-API never reached
    assert_no_proxy_password_logged(caplog)


# --- the pool: TLS through the tunnel is the origin's -------------------------------------------


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
def hello_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def get(pool: UpstreamPool) -> int:
    response = await pool.request("GET", "/", [("Host", f"{pool.host}:{pool.port}")])
    try:
        await response.read()
        return response.status
    finally:
        response.release()


@pytest.mark.parametrize(
    ("certificate_for", "trusted"),
    [("127.0.0.1", True), ("127.0.0.1", False), ("other.example", True)],
)
async def test_tls_through_the_tunnel_is_verified_against_the_origins_name(
    certificate_for: str,
    trusted: bool,
    aiohttp_server: ServerFactory,
    hello_app: web.Application,
    test_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    server = await aiohttp_server(hello_app, ssl=tls_server_context(test_ca, certificate_for))
    port = server.port
    assert port is not None
    client_context = ssl.create_default_context()
    if trusted:
        test_ca.configure_trust(client_context)
    with running_tinyproxy(tmp_path, connect_ports=(port,)) as tiny:
        egress = EgressProxy("127.0.0.1", tiny.port)
        async with UpstreamPool(
            f"https://127.0.0.1:{port}", ssl_context=client_context, egress=egress
        ) as pool:
            if certificate_for == "127.0.0.1" and trusted:
                assert await get(pool) == 200
            else:
                with pytest.raises(UpstreamConnectError) as raised:
                    await get(pool)
                assert not isinstance(raised.value, EgressProxyError)
                assert "certificate verify failed" in raised.value.what
        assert tiny.requests() == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]


async def test_a_dead_egress_proxy_is_named_by_its_address() -> None:
    unused_tcp_port = free_port()
    egress = parse_proxy_url(f"http://{CREDENTIALS}@127.0.0.1:{unused_tcp_port}")
    async with UpstreamPool("https://sellingpartnerapi-na.amazon.com", egress=egress) as pool:
        with pytest.raises(EgressProxyError) as raised:
            await get(pool)
    message = str(raised.value)
    assert f"the egress proxy 127.0.0.1:{unused_tcp_port} could not be reached" in message
    assert PROXY_PASSWORD not in message
    assert PROXY_USER not in message


# --- choosing the proxy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("sellingpartnerapi-na.amazon.com", 443, "*", True),
        ("sellingpartnerapi-na.amazon.com", 443, "amazon.com", True),
        ("sellingpartnerapi-na.amazon.com", 443, ".amazon.com", True),
        ("amazon.com", 443, ".amazon.com", True),
        ("notamazon.com", 443, "amazon.com", False),
        ("api.amazon.com", 443, "example.com, AMAZON.COM", True),
        ("api.amazon.com", 443, "example.com amazon.com", True),
        ("api.amazon.com", 443, "amazon.com:8443", False),
        ("api.amazon.com", 8443, "amazon.com:8443", True),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("10.1.2.3", 443, "10.1.2.3", True),
        ("10.1.2.4", 443, "10.1.2.3", False),
        ("10.1.2.3", 443, "2.3", False),  # no suffix matching for addresses
        ("::1", 443, "[::1]", True),
        ("::1", 443, "::1", True),
        ("::1", 8443, "[::1]:443", False),
        ("api.amazon.com", 443, "", False),
        ("api.amazon.com", 443, "*.amazon.com", False),  # curl has no wildcards but "*" alone
    ],
)
def test_no_proxy_matches_as_curl_does(host: str, port: int, no_proxy: str, bypassed: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypassed


def test_the_proxy_is_chosen_by_scheme_config_first_lowercase_winning() -> None:
    environ = {
        "HTTPS_PROXY": "http://upper:3128",
        "https_proxy": "lower:3129",
        "HTTP_PROXY": "http://plain:8080",
        "NO_PROXY": "internal.example",
    }
    https = egress_proxy_for("https://sellingpartnerapi-eu.amazon.com", None, environ)
    assert https == EgressProxy("lower", 3129)
    assert egress_proxy_for("http://127.0.0.1:9000", None, environ) == EgressProxy("plain", 8080)
    assert egress_proxy_for("https://sts.internal.example", None, environ) is None
    assert egress_proxy_for("https://api.amazon.com", "", environ) is None
    configured = egress_proxy_for("https://api.amazon.com", "http://u:p%40ss@corp:3128", environ)
    assert configured == EgressProxy("corp", 3128, "u", "p@ss")
    assert configured.authorization == "Basic dTpwQHNz"
    assert configured.url == "http://corp:3128"
    assert egress_proxy_for("https://sts.internal.example", "http://corp:3128", environ) is None
    assert egress_proxy_for("https://api.amazon.com", None, {}) is None


@pytest.mark.parametrize(
    "url",
    ["socks5://u:secret-pw@corp:1080", "https://u:secret-pw@corp:3128", "http://u:secret-pw@"],
)
def test_an_unusable_proxy_url_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(EgressProxyInvalid) as raised:
        egress_proxy_for("https://api.amazon.com", None, {"HTTPS_PROXY": url})
    assert "HTTPS_PROXY" in str(raised.value)
    assert "secret-pw" not in str(raised.value)


# --- config ------------------------------------------------------------------------------------


@pytest.fixture
def lwa_environ() -> dict[str, str]:
    return {
        "LWA_CLIENT_ID": "amzn1.application-oa2-client.x",
        "LWA_CLIENT_SECRET": "client-secret-value",
        "LWA_REFRESH_TOKEN": "Atzr|refresh-token-value",
    }


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_egress_proxy_null_empty_and_a_url_per_profile(
    tmp_path: Path, lwa_environ: dict[str, str]
) -> None:
    config = write_config(
        tmp_path,
        "upstream:\n"
        f"  egress_proxy: http://{CREDENTIALS}@corp.example:3128\n"
        "profiles:\n"
        "  direct:\n"
        "    upstream: {egress_proxy: ''}\n"
        "  environment:\n"
        "    upstream: {egress_proxy: null}\n"
        "  inherits:\n"
        "    upstream: {region: eu}\n",
    )
    settings = load_settings(config, lwa_environ)
    profiles = settings.all_profiles
    assert settings.upstream.egress_proxy == Secret(f"http://{CREDENTIALS}@corp.example:3128")
    assert profiles["direct"].upstream.egress_proxy == Secret("")
    assert profiles["environment"].upstream.egress_proxy is None
    assert profiles["inherits"].upstream.egress_proxy == settings.upstream.egress_proxy
    assert load_settings(None, lwa_environ).upstream.egress_proxy is None

    shown = render_masked(settings)
    assert PROXY_PASSWORD not in shown
    assert PROXY_USER not in shown
    assert "# upstream: egress through the proxy corp.example:3128" in shown
    assert "# profile direct: egress direct" in shown


@pytest.mark.parametrize(
    ("where", "url"),
    [
        ("upstream.egress_proxy", "socks5://u:secret-pw@corp:1080"),
        ("upstream.egress_proxy", "http://u:secret-pw@corp:99999"),
        ("HTTPS_PROXY", "https://u:secret-pw@corp:3128"),
        ("https_proxy", "http://u:secret-pw@corp:3128/path"),
    ],
)
def test_an_unusable_egress_proxy_is_a_config_error_that_hides_the_url(
    where: str, url: str, tmp_path: Path, lwa_environ: dict[str, str]
) -> None:
    environ = dict(lwa_environ)
    if where == "upstream.egress_proxy":
        environ["SPAPI_PROXY_UPSTREAM_EGRESS_PROXY"] = url
    else:
        environ[where] = url
    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ)
    assert raised.value.key == where
    assert "secret-pw" not in str(raised.value)


def test_the_environments_proxy_is_not_checked_when_every_profile_sets_its_own(
    lwa_environ: dict[str, str],
) -> None:
    environ = {
        **lwa_environ,
        "HTTPS_PROXY": "socks5://corp:1080",
        "SPAPI_PROXY_UPSTREAM_EGRESS_PROXY": "corp:3128",
    }
    assert load_settings(None, environ).upstream.egress_proxy == Secret("corp:3128")


async def test_restricted_data_tokens_come_through_the_same_tunnels(
    https_emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    ca_file: str,
    tmp_path: Path,
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    port = https_emulator.port
    assert port is not None
    with running_tinyproxy(tmp_path, connect_ports=(port,), credentials=CREDENTIALS) as tiny:
        settings = settings_for(https_emulator, emulator_config)
        proxy = await start_proxy(through(settings, tiny.url(CREDENTIALS), ca_file))
        response = await fetch(proxy, "/orders/v0/orders/TEST_CASE_200/address")
        assert response.status == 200, response.body
        tunnels = tiny.requests()
    # The Tokens API call and the restricted call went over SP-API's pooled tunnel.
    assert tunnels == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"] * 2
    assert emulator_state(https_emulator).received[-1].status == 200


async def test_a_refusing_proxy_in_front_of_lwa_is_503_naming_it_without_credentials(
    https_emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    ca_file: str,
    tmp_path: Path,
    no_proxy_variables: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_tinyproxy(tmp_path, connect_ports=(443,), credentials=CREDENTIALS) as tiny:
        settings = settings_for(https_emulator, emulator_config)
        proxy = await start_proxy(through(settings, tiny.url(CREDENTIALS), ca_file))
        response = await fetch(proxy)
    assert response.status == 503, response.body
    error = error_of(response)
    assert error["code"] == "LwaUnavailable"
    assert f"egress proxy {tiny.address}" in error["message"]
    assert PROXY_PASSWORD not in response.body.decode()
    assert PROXY_USER not in response.body.decode()
    assert_no_proxy_password_logged(caplog)


def test_egress_proxy_passwords_are_known_to_the_redactor(
    emulator_config: EmulatorConfig,
    aiohttp_server: ServerFactory,
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    no_proxy_variables.setenv("HTTP_PROXY", "http://env-user:env-pass-9d1e@corp:3128")
    settings = Settings(
        listen=ListenSettings(),
        upstream=UpstreamSettings(egress_proxy=Secret(f"http://{CREDENTIALS}@corp:3128")),
        lwa=LwaSettings("client", Secret("secret"), Secret("refresh")),
    )
    redactor = create_app(settings).redactor
    line = f"via http://{CREDENTIALS}@corp:3128 or {PROXY_PASSWORD} or env-pass-9d1e"
    scrubbed = redactor.scrub(line)
    assert PROXY_PASSWORD not in scrubbed
    assert "env-pass-9d1e" not in scrubbed


async def test_sts_through_an_unreachable_proxy_names_it_without_credentials(
    aiohttp_server: ServerFactory,
    clock: FakeClock,
    moto_sts: MotoSts,
    start_proxy: StartProxy,
    no_proxy_variables: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = EmulatorConfig(clock=clock, extra_credentials=moto_key_lookup(moto_sts))
    emulator = await aiohttp_server(create_emulator_app(config))
    dead = f"127.0.0.1:{free_port()}"
    # LWA and SP-API by the name NO_PROXY exempts; STS, at 127.0.0.1, through the dead proxy.
    no_proxy_variables.setenv("NO_PROXY", "localhost")
    settings = settings_for(emulator, config, aws=moto_aws_settings(moto_sts))
    settings = with_token_url_host(settings, "localhost")
    upstream = dataclasses.replace(
        settings.upstream,
        endpoint=f"http://localhost:{emulator.port}",
        egress_proxy=Secret(f"http://{CREDENTIALS}@{dead}"),
    )
    settings = dataclasses.replace(settings, upstream=upstream)
    response = await fetch(await start_proxy(settings))
    assert response.status == 503, response.body
    error = error_of(response)
    assert error["code"] == "StsUnavailable"
    assert f"egress proxy {dead}" in error["message"]
    assert PROXY_PASSWORD not in response.body.decode()
    assert_no_proxy_password_logged(caplog)
