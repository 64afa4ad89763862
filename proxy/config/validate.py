"""Checks across keys, run on built settings: credentials that only work together, and a
listener that anyone could reach without a key."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from proxy.config.errors import ConfigError
from proxy.config.settings import (
    AwsSettings,
    ListenSettings,
    LwaSettings,
    SharedStateSettings,
    UpstreamSettings,
)

REDIS_SCHEMES = ("redis", "rediss", "unix")
EGRESS_PROXY_FORM = "http://[user:password@]host[:port]"
# The variables an egress proxy comes from when upstream.egress_proxy is null, as curl reads them.
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")
MIN_ENCRYPTION_KEY_CHARS = 16


def check_exposure(listen: ListenSettings) -> None:
    """Refuse a non-loopback listener that anyone could use; call again after a --host override."""
    if listen.is_loopback or listen.auth_token or listen.allow_unauthenticated:
        return
    raise ConfigError(
        "listen.host",
        f"{listen.host!r} is not a loopback address, so set listen.auth_token (clients then "
        "send x-spapi-proxy-key) or, to accept anyone who can reach it, "
        "listen.allow_unauthenticated: true",
    )


def check_client_sellers(listen: ListenSettings, profiles: Mapping[str, LwaSettings]) -> None:
    """A proxy that takes the seller from the request spends any seller's quota, with the app's
    client secret, for whoever sends a refresh token: off loopback, only clients holding the
    client key may. allow_unauthenticated does not stand in for it here."""
    if listen.is_loopback or listen.auth_token:
        return
    for where, lwa in profiles.items():
        if lwa.accept_client_refresh_tokens:
            raise ConfigError(
                f"{where}.accept_client_refresh_tokens",
                f"is on while {listen.host!r} is not a loopback address and listen.auth_token is "
                "not set: anyone reaching the port could use any seller's refresh token with "
                "the app's client secret. Set listen.auth_token, or listen on loopback",
            )


def check_aws_keys(aws: AwsSettings | None, where: str) -> None:
    """Both signing keys or neither, and a session token exactly when the key needs one."""
    if aws is None:
        return
    _check_session_token(aws, where)
    if bool(aws.access_key_id) == bool(aws.secret_access_key):
        return
    given, missing = (
        (f"{where}.access_key_id", f"{where}.secret_access_key")
        if aws.access_key_id
        else (f"{where}.secret_access_key", f"{where}.access_key_id")
    )
    raise ConfigError(
        missing,
        f"{given} is set but {missing} is not; set both, or neither to use "
        "botocore's default credential chain",
    )


def _check_session_token(aws: AwsSettings, where: str) -> None:
    """AWS refuses a long-term key (AKIA…) sent with a session token, and a temporary one
    (ASIA…) sent without: both are certain 403s, so they are refused here, by name."""
    key_id = aws.access_key_id or ""
    if key_id.startswith("AKIA") and aws.session_token:
        raise ConfigError(
            f"{where}.session_token",
            f"is set, but {where}.access_key_id is a long-term key (AKIA…), which AWS refuses "
            "with a session token; unset AWS_SESSION_TOKEN or set session_token: ''",
        )
    if key_id.startswith("ASIA") and not aws.session_token:
        raise ConfigError(
            f"{where}.session_token",
            f"is not set, but {where}.access_key_id is a temporary key (ASIA…), which AWS "
            "refuses without its session token; set AWS_SESSION_TOKEN or aws.session_token",
        )


def check_shared_state(shared: SharedStateSettings) -> None:
    """A Redis URL the client can use, and the key to encrypt the tokens shared through it.

    The URL is a secret (it may hold a password): messages name its parts, never quote it.
    """
    if shared.redis_url is None:
        return
    try:
        parts = urlsplit(shared.redis_url.reveal())
        valid = parts.scheme in REDIS_SCHEMES and bool(parts.hostname or parts.path)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            "shared_state.redis_url",
            "must be redis://[:password@]host[:port][/db], rediss://… (TLS) or unix:///path",
        )
    key = shared.encryption_key
    if key is None or len(key.reveal()) < MIN_ENCRYPTION_KEY_CHARS:
        raise ConfigError(
            "shared_state.encryption_key",
            f"must be set, at least {MIN_ENCRYPTION_KEY_CHARS} characters, when "
            "shared_state.redis_url is: tokens are stored in Redis encrypted with it (generate "
            "one with `openssl rand -base64 32` and give every proxy of the fleet the same)",
        )


def check_egress_proxy(upstream: UpstreamSettings, where: str) -> None:
    """upstream.egress_proxy, when it names a proxy, is one the pool can use."""
    configured = upstream.egress_proxy
    if configured:
        _check_proxy_url(configured.reveal(), f"{where}.egress_proxy")


def check_environment_proxies(environ: Mapping[str, str]) -> None:
    """HTTPS_PROXY and the like, for the profiles that follow the environment."""
    for name in PROXY_VARIABLES:
        if environ.get(name, "").strip():
            _check_proxy_url(environ[name], name)


def _check_proxy_url(url: str, where: str) -> None:
    """A forward proxy URL (a bare host:port counts as http://, as curl takes it); never quoted,
    since it may hold a password."""
    text = url.strip()
    try:
        parts = urlsplit(text if "://" in text else f"http://{text}")
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(where, f"must be {EGRESS_PROXY_FORM} (the value is not shown)")
    if parts.scheme.lower() != "http":
        raise ConfigError(
            where,
            f"must be an http:// forward proxy, not {parts.scheme.lower()}:// (HTTPS to SP-API "
            "stays end to end: it goes through the proxy in a CONNECT tunnel)",
        )
