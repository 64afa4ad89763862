"""The schema of what the proxy runs with: the frozen settings objects every other module reads.

Only `proxy.config.load` builds them from a file and the environment; tests and the demo build
them directly. Nothing here reads a file or a variable.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy import __version__
from proxy.secret import Secret

# Hosts and SigV4 regions per SP-API region (docs/sp-api-facts.md §3).
REGIONS: dict[str, tuple[str, str, str]] = {
    # region: (production host, sandbox host, SigV4 region)
    "na": (
        "sellingpartnerapi-na.amazon.com",
        "sandbox.sellingpartnerapi-na.amazon.com",
        "us-east-1",
    ),
    "eu": (
        "sellingpartnerapi-eu.amazon.com",
        "sandbox.sellingpartnerapi-eu.amazon.com",
        "eu-west-1",
    ),
    "fe": (
        "sellingpartnerapi-fe.amazon.com",
        "sandbox.sellingpartnerapi-fe.amazon.com",
        "us-west-2",
    ),
}

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_BUSY_POLL_US = 10_000  # more would only burn CPU: an idle gap that long is not a gap


@dataclass(frozen=True)
class ListenSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    auth_token: Secret | None = None
    allow_unauthenticated: bool = False
    max_body_bytes: int = 10 * 1024 * 1024
    drain_timeout_s: float = 10.0
    # Processes sharing the port (SO_REUSEPORT); each fetches its own tokens, unless they share
    # them (and their buckets) through shared_state.
    workers: int = 1
    busy_poll_us: int = 50  # spin this long before the event loop sleeps (server/eventloop.py)
    header_timeout_s: float = 10.0  # a request head must be complete within this
    keepalive_timeout_s: float = 15.0  # an idle keep-alive connection closes after this
    body_timeout_s: float = 10.0  # longest a client may stall sending its body or reading
    max_connections: int | None = None  # inbound; None: from the descriptor limit (server/listener)

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")


@dataclass(frozen=True)
class UpstreamSettings:
    region: str = "na"
    sandbox: bool = True
    endpoint: str | None = None
    timeout_s: float = 30.0
    ca_bundle: str | None = None
    user_agent: str | None = None
    max_connections: int = 100
    # The forward proxy SP-API, LWA and STS are reached through: None follows the environment
    # (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), Secret("") means none, else http://[user:pass@]host:port.
    egress_proxy: Secret | None = None

    @property
    def base_url(self) -> str:
        """scheme://host[:port] of the upstream, no trailing slash."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        production, sandbox, _ = REGIONS[self.region]
        return f"https://{sandbox if self.sandbox else production}"

    @property
    def signing_region(self) -> str:
        return REGIONS[self.region][2]

    @property
    def effective_user_agent(self) -> str:
        import platform

        if self.user_agent:
            return self.user_agent
        return f"spapi-proxy/{__version__} (Language=Python/{platform.python_version()})"


@dataclass(frozen=True)
class LwaSettings:
    client_id: str
    client_secret: Secret
    refresh_token: Secret
    token_url: str = "https://api.amazon.com/auth/o2/token"
    token_headers: tuple[str, ...] = ("x-amz-access-token",)
    timeout_s: float = 10.0
    # A request may name its seller with x-spapi-refresh-token; the app's client id and secret
    # are used with it. Off: such a request is refused, never sent as the configured seller.
    accept_client_refresh_tokens: bool = False
    max_cached_sellers: int = 1000  # sellers whose tokens, RDTs and buckets are kept (LRU)


@dataclass(frozen=True)
class AwsSettings:
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None  # with temporary (ASIA…) keys
    role_arn: str | None = None
    role_session_name: str = "spapi-proxy"
    sts_endpoint: str | None = None
    timeout_s: float = 10.0

    @property
    def source(self) -> str:
        """Where the signing keys come from, in words (check-config and doctor print it)."""
        if self.role_arn:
            caller = "keys from the config" if self.access_key_id else "botocore's default chain"
            return f"STS AssumeRole {self.role_arn} (called with {caller})"
        if self.access_key_id:
            kind = "temporary, with a session token" if self.session_token else "long-term"
            return f"keys from the config ({kind})"
        return "keys from botocore's default chain (environment, ~/.aws, instance or task role)"


@dataclass(frozen=True)
class RdtSettings:
    enabled: bool = True  # fetch restricted data tokens for restricted operations
    max_cached: int = 10_000  # RDTs kept per profile (one per method, path and data elements)


# HTTP methods SP-API treats as idempotent: an upstream 429 is retried for these by default.
IDEMPOTENT_METHODS = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = True
    max_wait_s: float = 10.0  # longest a request waits for its bucket before a local 429
    retries: int = 2  # upstream 429s retried with backoff and jitter
    retry_methods: tuple[str, ...] = IDEMPOTENT_METHODS


# What a proxy does when the Redis it shares with others can't answer (proxy/fleet/).
SHARED_STATE_ON_ERROR = ("local", "refuse")


@dataclass(frozen=True)
class SharedStateSettings:
    """The Redis several proxies share buckets and tokens through; no URL: each process alone."""

    redis_url: Secret | None = None  # redis://, rediss:// (TLS) or unix://; may hold a password
    key_prefix: str = "spapi-proxy"
    timeout_s: float = 0.25  # one Redis call
    on_error: str = "local"  # local: this process's own buckets and tokens; refuse: 503
    encryption_key: Secret | None = None  # tokens in Redis are encrypted under it (AES-GCM)


# How log lines are written: the classic text line, or one JSON object per line for collectors.
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class LoggingSettings:
    format: str = "text"  # text | json
    level: str = "INFO"  # `--log-level` overrides it


DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class Profile:
    """One seller/region/credential set; requests pick it with `x-spapi-profile: NAME`."""

    name: str
    upstream: UpstreamSettings
    lwa: LwaSettings
    aws: AwsSettings | None = None


@dataclass(frozen=True)
class Settings:
    listen: ListenSettings
    upstream: UpstreamSettings
    lwa: LwaSettings
    aws: AwsSettings | None = None
    rdt: RdtSettings = RdtSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    shared_state: SharedStateSettings = SharedStateSettings()
    logging: LoggingSettings = LoggingSettings()
    # Named profiles besides the default one (the top-level upstream/lwa/aws).
    profiles: tuple[Profile, ...] = ()

    @property
    def default_profile(self) -> Profile:
        return Profile(DEFAULT_PROFILE, self.upstream, self.lwa, self.aws)

    @property
    def all_profiles(self) -> dict[str, Profile]:
        return {DEFAULT_PROFILE: self.default_profile, **{p.name: p for p in self.profiles}}
