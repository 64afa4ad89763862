"""The table of every setting: its section, type, default, whether it is secret, and its check.

Files, variables, rendering and profiles all walk `SCHEMA`; adding a key here (and a field of the
same name to its settings dataclass) is all it takes to make it configurable everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxy.config.checks import (
    check_busy_poll,
    check_endpoint,
    check_http_url,
    check_key_prefix,
    check_log_format,
    check_log_level,
    check_methods,
    check_not_negative,
    check_on_error,
    check_port,
    check_positive,
    check_readable_file,
    check_region,
    check_role_arn,
    check_session_name,
    check_token_headers,
)
from proxy.config.settings import (
    IDEMPOTENT_METHODS,
    AwsSettings,
    ListenSettings,
    LoggingSettings,
    LwaSettings,
    RateLimitSettings,
    RdtSettings,
    SharedStateSettings,
    UpstreamSettings,
)

Kind = Literal["str", "int", "float", "bool", "list"]
Check = Callable[[Any], Any]  # takes the converted value, returns it normalised or raises


@dataclass(frozen=True)
class Key:
    kind: Kind
    default: object = None
    optional: bool = False  # None or "" means "not set" and becomes None
    secret: bool = False  # wrapped in Secret, masked by render_masked
    check: Check | None = None
    # "" is a value of its own rather than "not set" (egress_proxy: "" means no proxy at all).
    empty_is_value: bool = False

    def __post_init__(self) -> None:
        # Converters and checks quote bad values in messages; a secret must never reach them.
        assert not self.secret or (self.kind == "str" and self.check is None)


@dataclass(frozen=True)
class Section:
    build: type[Any]  # the settings dataclass; its field names are the keys
    keys: Mapping[str, Key]
    optional: bool = False  # absent (None on Settings) unless opted into
    opt_in_env: tuple[str, ...] = ()  # extra variables whose being set enables the section


SCHEMA: dict[str, Section] = {
    "listen": Section(
        ListenSettings,
        {
            "host": Key("str", "127.0.0.1"),
            "port": Key("int", 8000, check=check_port),
            "auth_token": Key("str", None, optional=True, secret=True),
            "allow_unauthenticated": Key("bool", False),
            "max_body_bytes": Key("int", 10 * 1024 * 1024, check=check_positive),
            # 0 is a valid choice here: stop at once without waiting for requests in flight.
            "drain_timeout_s": Key("float", 10.0, check=check_not_negative),
            "workers": Key("int", 1, check=check_positive),
            "busy_poll_us": Key("int", 50, check=check_busy_poll),
            "header_timeout_s": Key("float", 10.0, check=check_positive),
            "keepalive_timeout_s": Key("float", 15.0, check=check_positive),
            "body_timeout_s": Key("float", 10.0, check=check_positive),
            # Absent: derived from the process's descriptor limit when the server starts.
            "max_connections": Key("int", None, optional=True, check=check_positive),
        },
    ),
    "upstream": Section(
        UpstreamSettings,
        {
            "region": Key("str", "na", check=check_region),
            "sandbox": Key("bool", True),
            "endpoint": Key("str", None, optional=True, check=check_endpoint),
            "timeout_s": Key("float", 30.0, check=check_positive),
            "ca_bundle": Key("str", None, optional=True, check=check_readable_file),
            "user_agent": Key("str", None, optional=True),
            "max_connections": Key("int", 100, check=check_positive),
            # null: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment; "": no proxy; a URL:
            # that proxy. Secret: the URL may hold the proxy's password. Checked in validate.py.
            "egress_proxy": Key("str", None, optional=True, secret=True, empty_is_value=True),
        },
    ),
    "lwa": Section(
        LwaSettings,
        {
            "client_id": Key("str", "${LWA_CLIENT_ID}"),
            "client_secret": Key("str", "${LWA_CLIENT_SECRET}", secret=True),
            "refresh_token": Key("str", "${LWA_REFRESH_TOKEN}", secret=True),
            "token_url": Key("str", "https://api.amazon.com/auth/o2/token", check=check_http_url),
            "token_headers": Key("list", ("x-amz-access-token",), check=check_token_headers),
            "timeout_s": Key("float", 10.0, check=check_positive),
            "accept_client_refresh_tokens": Key("bool", False),
            "max_cached_sellers": Key("int", 1000, check=check_positive),
        },
    ),
    "aws": Section(
        AwsSettings,
        {
            # Empty means "not set": keys from botocore's default chain, no AssumeRole.
            "access_key_id": Key("str", "${AWS_ACCESS_KEY_ID:-}", optional=True),
            "secret_access_key": Key(
                "str", "${AWS_SECRET_ACCESS_KEY:-}", optional=True, secret=True
            ),
            # Temporary keys (ASIA…, from aws sso, aws-vault or a CI runner) only sign with it.
            "session_token": Key("str", "${AWS_SESSION_TOKEN:-}", optional=True, secret=True),
            "role_arn": Key("str", "${SPAPI_ROLE_ARN:-}", optional=True, check=check_role_arn),
            "role_session_name": Key("str", "spapi-proxy", check=check_session_name),
            "sts_endpoint": Key("str", None, optional=True, check=check_http_url),
            "timeout_s": Key("float", 10.0, check=check_positive),
        },
        optional=True,
        opt_in_env=("SPAPI_ROLE_ARN",),
    ),
    "rdt": Section(
        RdtSettings,
        {
            "enabled": Key("bool", True),
            "max_cached": Key("int", 10_000, check=check_positive),
        },
    ),
    "rate_limits": Section(
        RateLimitSettings,
        {
            "enabled": Key("bool", True),
            "max_wait_s": Key("float", 10.0, check=check_not_negative),
            "retries": Key("int", 2, check=check_not_negative),
            "retry_methods": Key("list", IDEMPOTENT_METHODS, check=check_methods),
        },
    ),
    "shared_state": Section(
        SharedStateSettings,
        {
            # Secret: the URL may carry Redis's password (redis://:password@host:6379/0).
            "redis_url": Key("str", None, optional=True, secret=True),
            "key_prefix": Key("str", "spapi-proxy", check=check_key_prefix),
            "timeout_s": Key("float", 0.25, check=check_positive),
            "on_error": Key("str", "local", check=check_on_error),
            "encryption_key": Key("str", None, optional=True, secret=True),
        },
    ),
    "logging": Section(
        LoggingSettings,
        {
            "format": Key("str", "text", check=check_log_format),
            "level": Key("str", "INFO", check=check_log_level),
        },
    ),
}

# The top-level key holding named profiles, and the sections a profile may set; the other
# sections (listen, rdt, rate_limits, shared_state, logging) are proxy-wide.
PROFILES = "profiles"
PROFILE_SECTIONS = ("upstream", "lwa", "aws")

# section -> its keys as written in the file (None for a section written as null)
RawSections = dict[str, dict[str, object] | None]
