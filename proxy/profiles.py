"""Everything one profile owns at run time: its connection pool, credentials, RDT cache,
rate-limit buckets and forwarder. Profiles share nothing, so one seller's throttling or
failing credentials never touch another's."""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import ssl
import time
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from cachetools import LRUCache
from multidict import CIMultiDictProxy

from proxy.config.settings import DEFAULT_PROFILE, Profile, Settings
from proxy.credentials.rdt import RdtSource
from proxy.credentials.signing import RequestSigner
from proxy.credentials.store import CredentialStore
from proxy.errors import InvalidRequest
from proxy.fleet.keys import seller_id
from proxy.forwarding.forward import Forwarder, Sleep
from proxy.forwarding.headers import REFRESH_TOKEN_HEADER
from proxy.forwarding.operations import OperationIndex
from proxy.forwarding.ratelimit import RateLimiter
from proxy.forwarding.tokens import AccessTokens
from proxy.forwarding.upstream import Upstream
from proxy.http import EgressProxy, UpstreamPool, egress_proxy_for
from proxy.http.egress import PROXY_VARIABLES, proxy_url_secrets
from proxy.observability.metrics import ProxyMetrics
from proxy.observability.redact import Redactor
from proxy.secret import Secret

if TYPE_CHECKING:
    from proxy.fleet.runtime import Fleet  # imported by the app only when state is shared

# Idle upstream connections are closed after this long, aiohttp's keep-alive default: well
# under the usual server-side idle timeouts (60 s and more), so the server rarely wins the race.
IDLE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ProfileRuntime:
    profile: Profile
    credentials: CredentialStore
    access: AccessTokens
    forwarder: Forwarder
    # The sellers requests name in x-spapi-refresh-token; None while
    # lwa.accept_client_refresh_tokens is off.
    sellers: ClientSellers | None = None


# An LWA refresh token in a shape the redactor's token pattern masks whole wherever it shows up
# (`Atzr|`, then visible ASCII less `"&',;}`, which end that pattern's match), of a sane length.
CLIENT_REFRESH_TOKEN = re.compile(r"Atzr\|[!#-%(-+\--:<-|~]{1,4096}")


class ClientSellers:
    """One forwarder per seller a request named, each with its own LWA token, RDT cache and
    rate-limit buckets (on Redis, the seller's own keys), kept in a bounded LRU keyed by the
    seller's hash. An evicted seller starts again with an empty cache and full buckets."""

    def __init__(
        self,
        profile: Profile,
        app_forwarder: Forwarder,
        build: Callable[[Secret], Forwarder],
        redactor: Redactor,
    ) -> None:
        lwa = profile.lwa
        self._client_id = lwa.client_id
        self._configured = lwa.refresh_token.reveal().encode()
        self._app_forwarder = app_forwarder
        self._build = build
        self._redactor = redactor
        self._forwarders: LRUCache[str, Forwarder] = LRUCache(maxsize=lwa.max_cached_sellers)

    def forwarder_for(self, headers: CIMultiDictProxy[str]) -> Forwarder:
        """The forwarder of the seller named in x-spapi-refresh-token, else the profile's."""
        sent = headers.getall(REFRESH_TOKEN_HEADER, ())
        if not sent:
            return self._app_forwarder
        if len(sent) > 1:
            raise InvalidRequest(
                f"More than one {REFRESH_TOKEN_HEADER} header.",
                "Send one seller's refresh token per request.",
            )
        token: str = sent[0]
        if not CLIENT_REFRESH_TOKEN.fullmatch(token):
            raise InvalidRequest(  # never quoted: it may be a secret all the same
                f"{REFRESH_TOKEN_HEADER} is not an LWA refresh token.",
                "Send the seller's refresh token as LWA issued it: Atzr| followed by up to "
                "4096 visible ASCII characters other than \"&',;}.",
            )
        self._redactor.add(token)
        if hmac.compare_digest(token.encode(), self._configured):
            return self._app_forwarder  # the configured seller: one set of buckets, not two
        seller = seller_id(self._client_id, token)
        forwarder = self._forwarders.get(seller)
        if forwarder is None:
            forwarder = self._forwarders[seller] = self._build(Secret(token))
        return forwarder


def client_sellers_off(profile: Profile) -> InvalidRequest:
    """A request naming a seller the proxy was not told to accept: refused, because sending it
    as the configured seller would spend that seller's quota on another's behalf."""
    where = "lwa" if profile.name == DEFAULT_PROFILE else f"profiles.{profile.name}.lwa"
    return InvalidRequest(
        f"{REFRESH_TOKEN_HEADER} was sent, but {where}.accept_client_refresh_tokens is off "
        f"for profile {profile.name!r}.",
        f"Turn {where}.accept_client_refresh_tokens on to let requests name their seller, or "
        "leave the header out to use the configured seller.",
    )


@asynccontextmanager
async def running_profile(
    profile: Profile,
    settings: Settings,
    operations: OperationIndex,
    metrics: ProxyMetrics,
    clock: Callable[[], float] = time.time,
    redactor: Redactor | None = None,
    sleep: Sleep = asyncio.sleep,
    fleet: Fleet | None = None,
) -> AsyncIterator[ProfileRuntime]:
    async with lwa_session(profile) as session, upstream_pool(profile) as pool:
        signer = request_signer(profile, clock)
        upstream = Upstream(profile, pool, signer, metrics)

        def seller_runtime(
            seller: Profile, app: CredentialStore | None
        ) -> tuple[CredentialStore, AccessTokens, Forwarder]:
            """What one seller is served with: `profile` itself (app None), or `profile` with
            a refresh token a request sent, sharing the app's session, pool and AWS keys."""
            credentials = CredentialStore(
                seller,
                session,
                clock,
                on_refresh=metrics.count_refresh,
                redactor=redactor if app is None else app.redactor,
                sharing=None if fleet is None else fleet.credentials(seller),
                app=app,
            )
            rdts = RdtSource(seller, credentials, pool, signer, clock)
            access = AccessTokens(
                credentials, rdts, settings.rdt.enabled, settings.rdt.max_cached, clock, metrics
            )
            limiter = rate_limiter(seller, settings, clock)
            forwarder = Forwarder(
                upstream,
                access,
                operations,
                limiter,
                settings.rate_limits,
                settings.listen.max_body_bytes,
                sleep,
                # With shared state the fleet's buckets are asked first; this process's own are
                # what it falls back on when Redis can't answer.
                None if fleet is None or limiter is None else fleet.limiter(seller, limiter),
            )
            return credentials, access, forwarder

        credentials, access, forwarder = seller_runtime(profile, None)
        sellers = None
        if profile.lwa.accept_client_refresh_tokens:

            def client_seller(refresh_token: Secret) -> Forwarder:
                lwa = replace(profile.lwa, refresh_token=refresh_token)
                return seller_runtime(replace(profile, lwa=lwa), credentials)[2]

            sellers = ClientSellers(profile, forwarder, client_seller, credentials.redactor)
        yield ProfileRuntime(profile, credentials, access, forwarder, sellers)


def request_signer(profile: Profile, clock: Callable[[], float]) -> RequestSigner:
    upstream = profile.upstream
    region = upstream.signing_region if profile.aws is not None else None
    return RequestSigner(
        urlsplit(upstream.base_url).netloc, profile.lwa.token_headers, region, clock
    )


def rate_limiter(
    profile: Profile, settings: Settings, clock: Callable[[], float]
) -> RateLimiter | None:
    if not settings.rate_limits.enabled:
        return None
    # N worker processes each take 1/N of every bucket, so together they never overshoot.
    share = 1.0 / settings.listen.workers
    return RateLimiter(clock, share=share, sandbox=profile.upstream.sandbox)


@asynccontextmanager
async def upstream_pool(profile: Profile) -> AsyncIterator[UpstreamPool]:
    """SP-API's connections (the hot path: proxy/http/)."""
    upstream = profile.upstream
    base_url = upstream.base_url
    tls = tls_context(upstream.ca_bundle) if base_url.startswith("https:") else None
    async with UpstreamPool(
        base_url,
        ssl_context=tls,
        max_connections=upstream.max_connections,
        connect_timeout_s=min(10.0, upstream.timeout_s),
        read_timeout_s=upstream.timeout_s,
        idle_timeout_s=IDLE_TIMEOUT_S,
        egress=egress_proxy(profile, base_url),
    ) as pool:
        yield pool


@asynccontextmanager
async def lwa_session(profile: Profile) -> AsyncIterator[aiohttp.ClientSession]:
    """LWA's token calls (few, off the hot path) go through aiohttp; nothing else does."""
    upstream = profile.upstream
    egress = egress_proxy(profile, profile.lwa.token_url)
    connector = aiohttp.TCPConnector(
        limit=upstream.max_connections,
        ssl=tls_context(upstream.ca_bundle),
        ttl_dns_cache=300,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=min(10.0, upstream.timeout_s), sock_read=upstream.timeout_s
    )
    # auto_decompress off: aiohttp would inflate a compressed answer whole, however large; the
    # LWA source asks for it plain and decodes what still comes compressed within its cap.
    with warnings.catch_warnings():
        # The proxy's credentials go apart from its URL (aiohttp then never has them in a URL
        # it could quote) through `proxy_auth`, aiohttp 3's only session-wide way: its
        # successor, proxy_headers, exists per request only.
        warnings.simplefilter("ignore", DeprecationWarning)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            proxy=None if egress is None else egress.url,
            proxy_auth=None
            if egress is None or egress.authorization is None
            else aiohttp.BasicAuth(egress.username, egress.password),
        )
    async with session:
        yield session


def egress_proxy_secrets(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Every egress proxy URL the profiles may use, and their passwords, for the redactor."""
    urls = [
        p.upstream.egress_proxy.reveal()
        for p in settings.all_profiles.values()
        if p.upstream.egress_proxy
    ]
    urls += [environ[name] for name in PROXY_VARIABLES if environ.get(name, "").strip()]
    return [secret for url in urls for secret in proxy_url_secrets(url)]


def egress_proxy(profile: Profile, url: str) -> EgressProxy | None:
    """The forward proxy a connection to `url` goes through (upstream.egress_proxy, else the
    environment's HTTPS_PROXY / HTTP_PROXY / NO_PROXY), decided once per pool or session."""
    configured = profile.upstream.egress_proxy
    return egress_proxy_for(url, None if configured is None else configured.reveal(), os.environ)


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system's CA store, plus `upstream.ca_bundle` if set. Verification is never off."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context
