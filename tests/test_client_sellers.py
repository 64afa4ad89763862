"""Per-request sellers: `lwa.accept_client_refresh_tokens` lets a request name its seller with
`x-spapi-refresh-token`; the proxy then uses the app's client id and secret with that token.

End to end: the emulator is LWA (it knows several sellers), a small recording app is SP-API
where a test needs to see what crossed, and a real redis-server holds the fleet's state."""

from __future__ import annotations

import dataclasses
import json
import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.settings import (
    Profile,
    RateLimitSettings,
    Settings,
    SharedStateSettings,
)
from proxy.emulator import EmulatorConfig
from proxy.secret import Secret
from proxy.server.run import RunningServer
from tests.conftest import (
    ORDERS_TEST_CASE_200,
    ServerFactory,
    StartProxy,
    emulator_state,
    settings_for,
    url_of,
)
from tests.support.redis_server import RedisServer

HEADER = "x-spapi-refresh-token"
RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"
ADDRESS = "/orders/v0/orders/902-0000001-0000001/address"  # restricted: needs an RDT
SELLER_B = "Atzr|second-seller-refresh-token-never-logged"
SELLER_C = "Atzr|third-seller-refresh-token-never-logged"
UNKNOWN_SELLER = "Atzr|revoked-seller-refresh-token-never-logged"
ENCRYPTION_KEY = "client-sellers-encryption-key-0123456789"


@pytest.fixture
def emulator_config(clock: object) -> EmulatorConfig:
    # A burst the emulator's own throttle never reaches: the tests are about the proxy's. Its
    # rate stays the sandbox's 5/s, which it states in x-amzn-RateLimit-Limit.
    return EmulatorConfig(
        clock=clock,  # type: ignore[arg-type]
        other_refresh_tokens=(SELLER_B, SELLER_C),
        burst=10_000,
    )


def accepting(settings: Settings, **lwa: object) -> Settings:
    """`settings` with client refresh tokens accepted on the default profile."""
    changed = dataclasses.replace(
        settings.lwa,
        accept_client_refresh_tokens=True,
        **lwa,  # type: ignore[arg-type]
    )
    return dataclasses.replace(settings, lwa=changed)


async def call(
    proxy_url: str, path: str = ORDERS_TEST_CASE_200, **headers: str
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(proxy_url + path, headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.text()


def seller(token: str) -> dict[str, str]:
    return {HEADER: token}


def refresh_grants(emulator: TestServer) -> int:
    return emulator_state(emulator).lwa_calls["refresh_token"]


@dataclasses.dataclass
class RecordingSpApi:
    """SP-API that answers 200 to anything and keeps each request's headers."""

    seen: list[dict[str, str]] = dataclasses.field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {"path": request.path, **{k.lower(): v for k, v in request.headers.items()}}
        )
        if request.path == RDT_PATH:
            token = f"Atz.sprdt|recorded-{len(self.seen)}"
            return web.json_response({"restrictedDataToken": token, "expiresIn": 3600})
        return web.json_response({"payload": {}})

    def tokens_sent_to(self, path: str) -> list[str]:
        return [seen["x-amz-access-token"] for seen in self.seen if seen["path"] == path]


@pytest.fixture
async def recording_sp_api(
    aiohttp_server: ServerFactory,
) -> tuple[RecordingSpApi, TestServer]:
    recorder = RecordingSpApi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    return recorder, await aiohttp_server(app)


def proxy_url(running: RunningServer) -> str:
    return f"http://127.0.0.1:{running.port}"


# --- the option off ---------------------------------------------------------------------------


async def test_client_refresh_token_with_the_option_off_is_400_never_the_configured_seller(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    status, headers, body = await call(proxy_url(proxy), **seller(SELLER_B))
    assert status == 400
    assert headers["x-spapi-proxy-error"] == "InvalidInput"
    error = json.loads(body)["errors"][0]
    assert "lwa.accept_client_refresh_tokens" in error["message"]
    assert SELLER_B not in body
    assert refresh_grants(emulator) == 0  # nobody's token was fetched, nor was SP-API called


# --- one proxy ------------------------------------------------------------------------------


async def test_each_seller_goes_with_its_own_token_and_the_header_never_crosses(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    recording_sp_api: tuple[RecordingSpApi, TestServer],
) -> None:
    recorder, sp_api = recording_sp_api
    settings = accepting(settings_for(emulator, emulator_config))
    settings = dataclasses.replace(
        settings, upstream=dataclasses.replace(settings.upstream, endpoint=url_of(sp_api))
    )
    proxy = await start_proxy(settings)
    url = proxy_url(proxy)
    assert (await call(url))[0] == 200  # the configured seller
    assert (await call(url, **seller(SELLER_B)))[0] == 200
    assert (await call(url, **seller(SELLER_B)))[0] == 200  # cached
    assert (await call(url, **seller(SELLER_C)))[0] == 200
    assert refresh_grants(emulator) == 3  # one per seller
    tokens = [seen["x-amz-access-token"] for seen in recorder.seen]
    assert tokens[1] == tokens[2]
    assert len({tokens[0], tokens[1], tokens[3]}) == 3
    for seen in recorder.seen:
        assert HEADER not in seen
        assert not any(SELLER_B in value or SELLER_C in value for value in seen.values())


async def test_each_seller_gets_its_own_restricted_data_tokens(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    recording_sp_api: tuple[RecordingSpApi, TestServer],
) -> None:
    recorder, sp_api = recording_sp_api
    settings = accepting(settings_for(emulator, emulator_config))
    settings = dataclasses.replace(
        settings, upstream=dataclasses.replace(settings.upstream, endpoint=url_of(sp_api))
    )
    proxy = await start_proxy(settings)
    url = proxy_url(proxy)
    for token in (SELLER_B, SELLER_B, SELLER_C):
        assert (await call(url, ADDRESS, **seller(token)))[0] == 200
    asked_with = recorder.tokens_sent_to(RDT_PATH)
    assert len(asked_with) == 2  # B's RDT was cached for B's second call; C asked for its own
    assert asked_with[0] != asked_with[1]  # each with its own seller's LWA token
    sent = recorder.tokens_sent_to(ADDRESS)
    assert sent[0] == sent[1] != sent[2]
    assert all(token.startswith("Atz.sprdt|") for token in sent)


async def test_a_rejected_client_refresh_token_is_502_lwa_rejected_naming_no_secret(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = await start_proxy(accepting(settings_for(emulator, emulator_config)))
    status, headers, body = await call(proxy_url(proxy), **seller(UNKNOWN_SELLER))
    assert status == 502
    assert headers["x-spapi-proxy-error"] == "LwaRejected"
    error = json.loads(body)["errors"][0]
    assert "invalid_grant" in error["message"]
    assert HEADER in error["details"]  # the hint names where the token came from
    for secret in (UNKNOWN_SELLER, emulator_config.client_secret, "Atzr|"):
        assert secret not in body
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert UNKNOWN_SELLER not in logged
    assert "revoked-seller" not in logged


async def test_an_lwa_refusal_quoting_the_client_refresh_token_shows_it_masked(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    aiohttp_server: ServerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def echoing_lwa(request: web.Request) -> web.Response:
        refresh_token = (await request.post())["refresh_token"]
        assert isinstance(refresh_token, str)
        quoted = f"refresh token {refresh_token} was revoked by the seller"
        return web.json_response(
            {"error": "invalid_grant", "error_description": quoted}, status=400
        )

    app = web.Application()
    app.router.add_post("/auth/o2/token", echoing_lwa)
    lwa = await aiohttp_server(app)
    settings = accepting(
        settings_for(emulator, emulator_config), token_url=f"{url_of(lwa)}/auth/o2/token"
    )
    proxy = await start_proxy(settings)
    status, _, body = await call(proxy_url(proxy), **seller(SELLER_B))
    assert status == 502
    assert "was revoked by the seller" in body  # LWA's words are quoted ...
    assert "second-seller" not in body  # ... the token in them is not
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "second-seller" not in logged


async def test_a_malformed_client_refresh_token_is_400_without_quoting_it(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(accepting(settings_for(emulator, emulator_config)))
    for bad in ("Bearer something-secret-ish", "Atzr|", "Atzr|has,comma-secret-ish"):
        status, headers, body = await call(proxy_url(proxy), **seller(bad))
        assert status == 400, bad
        assert headers["x-spapi-proxy-error"] == "InvalidInput"
        assert "secret-ish" not in body
    assert refresh_grants(emulator) == 0


async def test_each_seller_has_its_own_rate_limit_bucket(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    settings = accepting(settings_for(emulator, emulator_config))
    # The sandbox plan (burst 15), no waiting: the 16th call of a seller is the proxy's 429.
    settings = dataclasses.replace(settings, rate_limits=RateLimitSettings(max_wait_s=0.0))
    proxy = await start_proxy(settings)
    url = proxy_url(proxy)
    for _ in range(15):
        assert (await call(url, **seller(SELLER_B)))[0] == 200
    status, headers, _ = await call(url, **seller(SELLER_B))
    assert (status, headers["x-spapi-proxy-error"]) == (429, "QuotaExceeded")
    assert (await call(url, **seller(SELLER_C)))[0] == 200
    assert (await call(url))[0] == 200  # the configured seller's bucket is its own too


async def test_the_seller_cache_is_bounded_and_an_evicted_seller_is_fetched_again(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(
        accepting(settings_for(emulator, emulator_config), max_cached_sellers=1)
    )
    url = proxy_url(proxy)
    assert (await call(url, **seller(SELLER_B)))[0] == 200
    assert (await call(url, **seller(SELLER_B)))[0] == 200
    assert refresh_grants(emulator) == 1
    assert (await call(url, **seller(SELLER_C)))[0] == 200  # B is evicted
    assert (await call(url, **seller(SELLER_B)))[0] == 200
    assert refresh_grants(emulator) == 3


async def test_the_option_is_per_profile_and_follows_x_spapi_profile(
    emulator: TestServer, emulator_config: EmulatorConfig, start_proxy: StartProxy
) -> None:
    base = settings_for(emulator, emulator_config)
    other = Profile(
        "other",
        dataclasses.replace(base.upstream, region="eu"),
        dataclasses.replace(base.lwa, accept_client_refresh_tokens=True),
    )
    proxy = await start_proxy(dataclasses.replace(base, profiles=(other,)))
    url = proxy_url(proxy)
    assert (await call(url, **seller(SELLER_B)))[0] == 400  # the default profile: off
    status, _, _ = await call(url, **{**seller(SELLER_B), "x-spapi-profile": "other"})
    assert status == 200
    assert refresh_grants(emulator) == 1


# --- configuration --------------------------------------------------------------------------

LWA_ENV = {
    "LWA_CLIENT_ID": "client-id",
    "LWA_CLIENT_SECRET": "client-secret",
    "LWA_REFRESH_TOKEN": "Atzr|refresh",
}


def test_client_refresh_tokens_are_off_by_default_and_the_cache_has_a_bound() -> None:
    settings = load_settings(None, LWA_ENV)
    assert settings.lwa.accept_client_refresh_tokens is False
    assert settings.lwa.max_cached_sellers == 1000
    on = load_settings(
        None,
        {
            **LWA_ENV,
            "SPAPI_PROXY_LWA_ACCEPT_CLIENT_REFRESH_TOKENS": "true",
            "SPAPI_PROXY_LWA_MAX_CACHED_SELLERS": "50",
        },
    )
    assert (on.lwa.accept_client_refresh_tokens, on.lwa.max_cached_sellers) == (True, 50)


def test_client_refresh_tokens_on_an_open_non_loopback_listener_are_refused() -> None:
    environ = {
        **LWA_ENV,
        "SPAPI_PROXY_LWA_ACCEPT_CLIENT_REFRESH_TOKENS": "true",
        "SPAPI_PROXY_LISTEN_HOST": "0.0.0.0",
        "SPAPI_PROXY_LISTEN_ALLOW_UNAUTHENTICATED": "true",
    }
    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ)
    assert "lwa.accept_client_refresh_tokens" in str(raised.value)
    assert "listen.auth_token" in str(raised.value)
    # With a client key the combination is fine; on loopback too.
    load_settings(None, {**environ, "SPAPI_PROXY_LISTEN_AUTH_TOKEN": "a-client-key-0123456789"})
    del environ["SPAPI_PROXY_LISTEN_HOST"]
    load_settings(None, environ)


# --- the fleet, on Redis --------------------------------------------------------------------


def fleet_settings(
    emulator: TestServer, config: EmulatorConfig, redis: RedisServer, prefix: str
) -> Settings:
    settings = accepting(settings_for(emulator, config))
    return dataclasses.replace(
        settings,
        shared_state=SharedStateSettings(
            redis_url=Secret(redis.url),
            encryption_key=Secret(ENCRYPTION_KEY),
            key_prefix=prefix,
            timeout_s=2.0,
        ),
    )


async def test_on_redis_the_same_seller_on_two_proxies_is_one_lwa_fetch(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    redis_server: RedisServer,
) -> None:
    settings = fleet_settings(emulator, emulator_config, redis_server, "one-fetch")
    first, second = await start_proxy(settings), await start_proxy(settings)
    assert (await call(proxy_url(first), **seller(SELLER_B)))[0] == 200
    assert (await call(proxy_url(second), **seller(SELLER_B)))[0] == 200
    assert refresh_grants(emulator) == 1
    assert (await call(proxy_url(second), **seller(SELLER_C)))[0] == 200
    assert refresh_grants(emulator) == 2
    stored = redis_server.command(b"KEYS", b"one-fetch:*").decode("latin-1")
    assert "second-seller" not in stored
    assert "Atz" not in stored


async def test_on_redis_two_sellers_buckets_are_separate_and_shared_by_the_proxies(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    redis_server: RedisServer,
) -> None:
    settings = fleet_settings(emulator, emulator_config, redis_server, "buckets")
    settings = dataclasses.replace(settings, rate_limits=RateLimitSettings(max_wait_s=0.0))
    first, second = await start_proxy(settings), await start_proxy(settings)
    granted = 0
    for proxy in (first, second) * 20:
        status, headers, _ = await call(proxy_url(proxy), **seller(SELLER_B))
        if status != 200:
            assert (status, headers["x-spapi-proxy-error"]) == (429, "QuotaExceeded")
            break
        granted += 1
    # One bucket of 15 for both proxies, plus what Redis' clock refills meanwhile (5/s); two
    # buckets of their own would have granted 30.
    assert 15 <= granted < 25
    assert (await call(proxy_url(first), **seller(SELLER_C)))[0] == 200
    assert (await call(proxy_url(second), **seller(SELLER_C)))[0] == 200


async def test_on_redis_a_rejected_client_refresh_token_is_502_and_leaks_nothing(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: StartProxy,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = fleet_settings(emulator, emulator_config, redis_server, "rejected")
    proxy = await start_proxy(settings)
    status, headers, body = await call(proxy_url(proxy), **seller(UNKNOWN_SELLER))
    assert (status, headers["x-spapi-proxy-error"]) == (502, "LwaRejected")
    assert "revoked-seller" not in body
    assert "Atzr|" not in body
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "revoked-seller" not in logged
    stored = redis_server.command(b"KEYS", b"rejected:*").decode("latin-1")
    assert "revoked-seller" not in stored
