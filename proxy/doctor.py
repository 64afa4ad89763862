"""`spapi-proxy doctor`: checks the config, fetches each credential once and calls SP-API once
per profile, and prints one verdict line per check with the cause and the fix in plain words.

    ok   config: config.yaml: 1 profile (default)
    ok   [default] LWA token: fetched from https://api.amazon.com/auth/o2/token, valid 3600 s
    skip [default] AWS credentials: no aws section, requests are LWA-only
    ok   [default] SP-API call: GET /sellers/v1/marketplaceParticipations via https://… answered 200
    doctor: 3 ok, 0 failed

The SP-API call goes through the proxy itself (started in-process on a free loopback port), so
it proves the whole path a client's request takes: profile selection, token, headers, signing.
Every line goes through a `Redactor` that knows the configured secrets and every token fetched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, TextIO

import aiohttp
from multidict import CIMultiDictProxy
from redis.exceptions import AuthenticationError
from yarl import URL

from proxy.config.environment import config_path_from
from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.settings import DEFAULT_PROFILE, Profile, Settings, SharedStateSettings
from proxy.credentials.lwa import LWA_HINTS, LwaTokenSource
from proxy.credentials.sts import CHAIN_REREAD_S, AwsCredentialSource
from proxy.errors import CredentialError, LwaRejected
from proxy.fleet.store import REDIS_ERRORS, OnError, SharedState, location_of
from proxy.forwarding.diagnosis import BODY_HEAD_BYTES, HINT_HEADER, LWA, Exchange, hint_for
from proxy.forwarding.headers import PROFILE_HEADER
from proxy.observability.redact import Redactor
from proxy.profiles import lwa_session
from proxy.server.app import create_app, register_config_secrets
from proxy.server.run import RunningServer, start_server

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# An operation every seller app may call, with no RDT and no grantless token: it tests the
# token and the app's authorization alone (the emulator has a static case for it).
PROBE_PATH = "/sellers/v1/marketplaceParticipations"
CLIENT_KEY_HEADER = "x-spapi-proxy-key"
PROXY_ERROR_HEADER = "x-spapi-proxy-error"
REQUEST_ID_HEADER = "x-amzn-RequestId"
MAX_QUOTED_CHARS = 200  # of a message quoted from an error body
UPSTREAM = "SP-API call"
SHARED_STATE = "shared state"

Verdict = Literal["ok", "FAIL", "skip"]


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    subject: str  # "LWA token", "AWS credentials", "SP-API call", "config"
    text: str
    profile: str | None = None

    def line(self) -> str:
        where = f"[{self.profile}] " if self.profile else ""
        # Remote text may hold newlines; a check is one line whatever it quotes.
        return f"{self.verdict:<4} {where}{self.subject}: {' '.join(self.text.split())}"


class Report:
    """Writes each check as one redacted line and counts the verdicts."""

    def __init__(self, out: TextIO, redactor: Redactor) -> None:
        self._out = out
        self._redactor = redactor
        self.ok = 0
        self.failed = 0

    def add(self, check: Check) -> bool:
        """Print the check; True unless it failed."""
        self._out.write(self._redactor.scrub(check.line()) + "\n")
        self._out.flush()  # a slow check should not hide the verdicts before it
        self.ok += check.verdict == "ok"
        self.failed += check.verdict == "FAIL"
        return check.verdict != "FAIL"

    def finish(self) -> int:
        self._out.write(f"doctor: {self.ok} ok, {self.failed} failed\n")
        return EXIT_OK if self.failed == 0 else EXIT_FAILURE


def doctor_main(
    config_path: str | None,
    environ: Mapping[str, str],
    out: TextIO | None = None,
    redactor: Redactor | None = None,
) -> int:
    """The CLI's entry: load the settings (a bad config is exit 2, naming the key), then check."""
    out = out or sys.stdout
    redactor = redactor or Redactor()
    path = config_path_from(config_path, environ)
    try:
        settings = load_settings(path, environ)
    except ConfigError as error:
        report = Report(out, redactor)
        report.add(Check("FAIL", "config", str(error)))
        report.finish()
        return EXIT_USAGE
    source = path or "built-in defaults and environment"
    return asyncio.run(run_doctor(settings, out, redactor=redactor, config_source=source))


async def run_doctor(
    settings: Settings,
    out: TextIO,
    *,
    redactor: Redactor | None = None,
    config_source: str = "settings",
) -> int:
    """Run every check, print one line each and a summary; 0 only when none failed."""
    redactor = redactor or Redactor()
    register_config_secrets(redactor, settings)
    report = Report(out, redactor)
    profiles = settings.all_profiles
    names = ", ".join(profiles)
    count = f"{len(profiles)} profile{'' if len(profiles) == 1 else 's'}"
    report.add(Check("ok", "config", f"{config_source}: {count} ({names})"))
    if settings.shared_state.redis_url is not None:
        report.add(await check_shared_state(settings.shared_state))
    async with local_proxy(settings, redactor) as proxy:
        for profile in profiles.values():
            await check_profile(profile, settings, proxy, report, redactor)
    return report.finish()


async def check_profile(
    profile: Profile,
    settings: Settings,
    proxy: LocalProxy,
    report: Report,
    redactor: Redactor,
) -> None:
    lwa_ok = report.add(await check_lwa(profile, redactor))
    aws_ok = report.add(await check_aws(profile, redactor))
    if lwa_ok and aws_ok:
        report.add(await check_upstream(profile, settings, proxy))
    else:
        # Through the proxy the same credential would fail again: one FAIL per cause is enough.
        report.add(skip(profile, UPSTREAM, "not tried: fix the credentials above first"))


def skip(profile: Profile, subject: str, text: str) -> Check:
    return Check("skip", subject, text, profile.name)


# --- shared state -----------------------------------------------------------------------------


async def check_shared_state(shared: SharedStateSettings) -> Check:
    """One PING to the Redis the proxies share, named by host, port and database only."""
    assert shared.redis_url is not None
    url = shared.redis_url.reveal()
    where = location_of(url)
    state = SharedState.from_url(url, shared.key_prefix, shared.timeout_s, OnError.LOCAL)
    alone = (
        "serves with its own buckets and tokens meanwhile"
        if shared.on_error == OnError.LOCAL.value
        else "answers 503 SharedStateUnavailable meanwhile (on_error: refuse)"
    )
    try:
        await state.client.ping()
    except AuthenticationError:
        return Check(
            "FAIL",
            SHARED_STATE,
            f"Redis at {where} refused the password in shared_state.redis_url; the proxy {alone}",
        )
    except REDIS_ERRORS as error:
        return Check(
            "FAIL",
            SHARED_STATE,
            f"Redis at {where} did not answer within {shared.timeout_s:g} s "
            f"({type(error).__name__}): check shared_state.redis_url and that Redis runs there; "
            f"the proxy {alone}",
        )
    finally:
        await state.close()
    return Check(
        "ok",
        SHARED_STATE,
        f"Redis at {where} answers; buckets and tokens are shared under {shared.key_prefix}:",
    )


# --- credentials ------------------------------------------------------------------------------


async def check_lwa(profile: Profile, redactor: Redactor) -> Check:
    """One refresh_token grant, the way the proxy asks for it (same source class, same TLS)."""
    subject, lwa = "LWA token", profile.lwa
    async with lwa_session(profile) as session:
        source = LwaTokenSource(lwa, session, time.time, redactor=redactor)
        started = time.time()
        try:
            token = await source.fetch()
        except LwaRejected as error:
            return Check("FAIL", subject, lwa_refusal(error), profile.name)
        except CredentialError as error:
            return Check("FAIL", subject, f"{error.message} {error.details}", profile.name)
    valid = round(token.expires_at - started)
    text = f"fetched from {displayed(lwa.token_url)}, valid {valid} s"
    return Check("ok", subject, text, profile.name)


def lwa_refusal(error: LwaRejected) -> str:
    """LWA's error code and what to do about it; LWA's own description only for unknown codes."""
    hint = LWA_HINTS.get(error.lwa_error)
    if hint is None:
        return f"{error.message} {error.details}"
    what = "refresh token" if error.lwa_error == "invalid_grant" else "token request"
    return f"LWA refused the {what} ({error.lwa_error}): {hint[:1].lower()}{hint[1:]}"


async def check_aws(profile: Profile, redactor: Redactor) -> Check:
    subject, aws = "AWS credentials", profile.aws
    if aws is None:
        return skip(profile, subject, "no aws section, requests are LWA-only")
    region = profile.upstream.signing_region
    source = AwsCredentialSource(
        aws, region, time.time, redactor=redactor, egress_proxy=profile.upstream.egress_proxy
    )
    started = time.time()
    try:
        found = await source.fetch()
    except CredentialError as error:
        return Check("FAIL", subject, f"{error.message} {error.details}", profile.name)
    except Exception as error:
        # botocore raises more than the proxy maps (a broken ~/.aws/config, say): still one line.
        logger.debug("AWS credentials failed unexpectedly", exc_info=True)
        text = f"{type(error).__name__} while getting them; --log-level DEBUG shows more"
        return Check("FAIL", subject, text, profile.name)
    if source.kind == "sts":
        text = f"assumed {aws.role_arn} via STS, valid {round(found.expires_at - started)} s"
    elif source.kind == "aws-keys":
        text = f"{aws.source} used as they are (no role_arn)"
    else:
        text = f"found by botocore's default chain (re-read every {CHAIN_REREAD_S:.0f} s)"
    return Check("ok", subject, f"{text}, signing for {region}", profile.name)


def displayed(url: str) -> str:
    """A URL fit to print: no user:password@, no query."""
    return str(URL(url).with_user(None).with_query(None))


# --- the upstream call, through the proxy -----------------------------------------------------


@dataclass
class LocalProxy:
    """The proxy running in-process on a free loopback port, and a session to call it with."""

    server: RunningServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@asynccontextmanager
async def local_proxy(settings: Settings, redactor: Redactor) -> AsyncIterator[LocalProxy]:
    # Loopback whatever listen.host says: the doctor's proxy serves the doctor alone. The shared
    # redactor learns every token the proxy fetches, so no line the doctor prints can show one.
    app = create_app(settings, redactor=redactor)
    server = await start_server(app, "127.0.0.1", 0, drain_timeout_s=1.0)
    try:
        async with aiohttp.ClientSession() as session:
            yield LocalProxy(server, session)
    finally:
        await server.stop()


def call_timeout(profile: Profile) -> aiohttp.ClientTimeout:
    # The proxy bounds each step itself (LWA and STS, retries included, then upstream.timeout_s);
    # this only guards against waiting forever.
    aws_s = profile.aws.timeout_s if profile.aws else 0.0
    return aiohttp.ClientTimeout(
        total=profile.upstream.timeout_s + profile.lwa.timeout_s + aws_s + 30
    )


def probe_headers(profile: Profile, settings: Settings) -> dict[str, str]:
    headers: dict[str, str] = {}
    if profile.name != DEFAULT_PROFILE:
        headers[PROFILE_HEADER] = profile.name
    if settings.listen.auth_token:
        headers[CLIENT_KEY_HEADER] = settings.listen.auth_token.reveal()
    return headers


async def check_upstream(profile: Profile, settings: Settings, proxy: LocalProxy) -> Check:
    call = f"GET {PROBE_PATH} via {displayed(profile.upstream.base_url)}"
    try:
        async with proxy.session.get(
            proxy.url + PROBE_PATH,
            headers=probe_headers(profile, settings),
            timeout=call_timeout(profile),
        ) as response:
            body = await read_head(response.content, BODY_HEAD_BYTES)
            status, headers = response.status, response.headers
    except (TimeoutError, aiohttp.ClientError) as error:
        text = f"{call}: no answer from the doctor's own proxy ({type(error).__name__})"
        return Check("FAIL", UPSTREAM, text, profile.name)
    return upstream_verdict(profile.name, call, status, headers, body)


async def read_head(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of the body: enough for any error answer, bounded for any other."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (part := await content.read(limit - size)):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def upstream_verdict(
    profile: str, call: str, status: int, headers: CIMultiDictProxy[str], body: bytes
) -> Check:
    request_id = headers.get(REQUEST_ID_HEADER)
    quoted_id = f" ({REQUEST_ID_HEADER} {request_id})" if request_id else ""
    if status == 200:
        return Check("ok", UPSTREAM, f"{call} answered 200{quoted_id}", profile)
    content_type = headers.get("Content-Type", "")
    proxy_code = headers.get(PROXY_ERROR_HEADER)
    if proxy_code:
        # The proxy's own errors are written for the user and hold no secret (proxy.errors).
        said = error_summary(content_type, body, with_details=True)
        text = f"{call}: the proxy answered {status} {proxy_code}: {said}"
        return Check("FAIL", UPSTREAM, text, profile)
    hint = headers.get(HINT_HEADER) or probe_hint(status, content_type, body)
    said = error_summary(content_type, body, with_details=hint is None)
    text = f"{call}: SP-API answered {status} {said}{quoted_id}"
    return Check("FAIL", UPSTREAM, text + (f" -> {hint}" if hint else ""), profile)


def probe_hint(status: int, content_type: str, body: bytes) -> str | None:
    """Our own diagnosis, for when the proxy sent no hint header (the probe is a plain seller
    operation called with the profile's LWA token)."""
    exchange = Exchange(
        method="GET",
        path=PROBE_PATH,
        client_sent_body=False,
        client_token_header=None,
        token_kind=LWA,
        operation_restricted=False,
        operation_grantless=False,
        status=status,
        content_type=content_type,
        body_head=body,
    )
    return hint_for(exchange)


def error_summary(content_type: str, body: bytes, *, with_details: bool) -> str:
    """`code: message (details)` of the first SP-API-shaped error, each cut short."""
    try:
        entry = json.loads(body)["errors"][0]
        code, message = str(entry["code"]), str(entry.get("message", ""))
        details = str(entry.get("details") or "") if with_details else ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        if "html" in content_type.lower():
            return "with an HTML page (Amazon's edge, not SP-API)"
        return f"with a {len(body)}-byte body that is not SP-API's error shape"
    text = f"{code[:64]}: {message[:MAX_QUOTED_CHARS]}"
    return text + (f" ({details[:MAX_QUOTED_CHARS]})" if details else "")
