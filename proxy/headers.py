"""Which headers cross the proxy, in each direction (PRODUCT.md "What the proxy does")."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict

# RFC 9110 §7.6.1: meaningful for one connection only.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# The proxy's own request headers: which profile, an RDT the client brings, personal data wanted.
PROFILE_HEADER = "x-spapi-profile"
CLIENT_RDT_HEADER = "x-spapi-rdt"
DATA_ELEMENTS_HEADER = "x-spapi-data-elements"

# The proxy sets these itself; a client's copy is dropped so it can't be forwarded twice
# or override the signed value.
OWNED = frozenset(
    {
        "host",
        "authorization",
        "x-amz-access-token",
        "x-amzn-access-token",
        "x-amz-security-token",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-spapi-proxy-key",
        "user-agent",
        PROFILE_HEADER,
        CLIENT_RDT_HEADER,
        DATA_ELEMENTS_HEADER,
    }
)

# Framing is recomputed for the body actually sent; `Expect` was answered by our server.
DROPPED_FROM_REQUEST = HOP_BY_HOP | OWNED | {"content-length", "expect"}


def connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Header names a `Connection` header marks as hop-by-hop for this message."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return frozenset(named)


def request_headers_to_forward(client: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's headers that go upstream, in order, duplicates kept (a plain list: the
    proxy only appends its own headers to it, which it already dropped from the client's)."""
    pairs = list(client)
    dropped = DROPPED_FROM_REQUEST | connection_tokens(pairs)
    return [(name, value) for name, value in pairs if name.lower() not in dropped]


def response_headers_to_return(upstream: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    pairs = list(upstream)
    dropped = HOP_BY_HOP | connection_tokens(pairs)
    return CIMultiDict((name, value) for name, value in pairs if name.lower() not in dropped)


def combined_user_agent(client_agent: str | None, proxy_agent: str) -> str:
    """Keep the client's product token (Amazon asks apps to name themselves) and add ours.

    Amazon caps User-Agent at 500 characters (FACTS.md §8).
    """
    if not client_agent:
        return proxy_agent[:500]
    return f"{client_agent} {proxy_agent}"[:500]
