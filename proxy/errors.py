"""The proxy's own failures: one exception per row of the README's "Errors the proxy itself
answers" table.

    ProxyError                      (status, code)
    ├── CredentialError             a credential source failed; `source` names it
    │   ├── LwaRejected             502  LWA answered 4xx (its error code is kept)
    │   ├── LwaUnavailable          503  LWA unreachable or 5xx after retries
    │   ├── StsRejected             502  STS refused AssumeRole
    │   └── StsUnavailable          503  STS unreachable or 5xx after retries
    ├── RdtRejected                 4xx/502  the Tokens API refused a restricted data token
    ├── QuotaExceeded               429  the operation's rate limit; Amazon's quota not spent
    ├── UpstreamUnreachable         502  connecting to SP-API failed
    ├── UpstreamTimeout             504  SP-API slower than upstream.timeout_s
    ├── SharedStateUnavailable      503  Redis (shared_state) unreachable and on_error is refuse
    ├── RequestTooLarge             413  body over listen.max_body_bytes
    ├── ProxyUnauthorized           401  missing or wrong x-spapi-proxy-key
    ├── InvalidRequest              400  a request the proxy refuses to forward
    │   ├── UnsupportedExpectation  417  an Expect header other than 100-continue
    │   └── MethodNotAllowed        405  a method the proxy's own endpoints don't serve
    └── ProxyNotFound               404  unknown /_proxy/ path

Messages are written for the user and never hold a secret: callers pass error codes
and setting names, never values read from credentials or responses' token fields.
"""

from __future__ import annotations

import math

from proxy.http.errors import (
    EgressProxyError,
    UpstreamHttpError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)


class ProxyError(Exception):
    status: int = 500
    code: str = "InternalError"

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}  # extra response headers, e.g. Retry-After


class CredentialError(ProxyError):
    """A credential source (LWA or STS) could not give a usable credential."""

    source: str = "credentials"


class LwaRejected(CredentialError):
    status, code, source = 502, "LwaRejected", "lwa"

    def __init__(self, message: str, details: str = "", lwa_error: str = "") -> None:
        super().__init__(message, details)
        self.lwa_error = lwa_error


class LwaUnavailable(CredentialError):
    status, code, source = 503, "LwaUnavailable", "lwa"


class StsRejected(CredentialError):
    status, code, source = 502, "StsRejected", "sts"


class StsUnavailable(CredentialError):
    status, code, source = 503, "StsUnavailable", "sts"


class RdtRejected(ProxyError):
    """Amazon's own 4xx when the Tokens API refused the request, else 502."""

    status, code = 502, "RdtRejected"

    def __init__(self, message: str, details: str = "", status: int = 502) -> None:
        super().__init__(message, details)
        self.status = status


class QuotaExceeded(ProxyError):
    """Same code as Amazon's own 429, so clients handle both alike; x-spapi-proxy-error tells."""

    status, code = 429, "QuotaExceeded"
    # The proxy's bucket may follow a rate Amazon no longer applies; a client that comes back
    # within a minute costs at most another local answer.
    MAX_RETRY_AFTER_S = 60.0

    def __init__(self, message: str, details: str, retry_after_s: float) -> None:
        super().__init__(message, details)
        if math.isnan(retry_after_s) or retry_after_s > self.MAX_RETRY_AFTER_S:
            retry_after_s = self.MAX_RETRY_AFTER_S
        self.headers["Retry-After"] = str(max(1, math.ceil(max(0.0, retry_after_s))))


class UpstreamUnreachable(ProxyError):
    status, code = 502, "UpstreamUnreachable"


class UpstreamTimeout(ProxyError):
    status, code = 504, "UpstreamTimeout"


def upstream_failure(error: UpstreamHttpError, base_url: str, timeout_s: float) -> ProxyError:
    """What the client is told when the connection pool could not get SP-API's answer."""
    if isinstance(error, UpstreamTimeoutError):
        return UpstreamTimeout(
            f"SP-API did not answer within {timeout_s:g} s (upstream.timeout_s).",
            "Retry later, or raise upstream.timeout_s for slow operations such as reports.",
        )
    if isinstance(error, UpstreamProtocolError):
        return UpstreamUnreachable(
            f"The answer of SP-API at {base_url} could not be read: it {error.what}.",
            "Retry the request; if it keeps happening, check what sits between the proxy "
            "and the upstream (upstream.endpoint, a middlebox).",
        )
    if isinstance(error, EgressProxyError):
        return UpstreamUnreachable(
            f"Could not connect to SP-API at {base_url}: {error.what}.",
            "Check the egress proxy: upstream.egress_proxy, or HTTPS_PROXY / HTTP_PROXY / "
            "NO_PROXY in the proxy's environment when it is not set.",
        )
    return UpstreamUnreachable(
        f"Could not connect to SP-API at {base_url}: {error.what}.",
        "Check network access to the upstream (upstream.region, upstream.endpoint).",
    )


class SharedStateUnavailable(ProxyError):
    """The fleet's shared buckets and tokens are out of reach and `shared_state.on_error` is
    `refuse`: serving alone could overshoot the quota the replicas share."""

    status, code = 503, "SharedStateUnavailable"


class RequestTooLarge(ProxyError):
    status, code = 413, "RequestTooLarge"


class ProxyUnauthorized(ProxyError):
    status, code = 401, "ProxyUnauthorized"


class InvalidRequest(ProxyError):
    status, code = 400, "InvalidInput"


class UnsupportedExpectation(InvalidRequest):
    status = 417


class MethodNotAllowed(InvalidRequest):
    """A method the proxy's own endpoints don't serve (they are GET and HEAD only)."""

    status = 405


class ProxyNotFound(ProxyError):
    status, code = 404, "NotFound"
