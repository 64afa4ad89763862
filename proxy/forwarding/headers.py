"""Which headers cross the proxy, in each direction (README "What happens to a request")."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDictProxy

from proxy.observability.request_ids import REQUEST_ID_HEADER

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

# The proxy's own request headers: which profile, an RDT the client brings, personal data wanted,
# and which seller.
PROFILE_HEADER = "x-spapi-profile"
CLIENT_RDT_HEADER = "x-spapi-rdt"
DATA_ELEMENTS_HEADER = "x-spapi-data-elements"
# The header SP-API reads its token from. A client's copy is dropped like every owned header,
# but an RDT in it is the client's RDT: SDKs put the RDT they fetched there.
ACCESS_TOKEN_HEADER = "x-amz-access-token"
RDT_PREFIX = "Atz.sprdt|"
# The seller a request is for, when lwa.accept_client_refresh_tokens lets clients name one.
REFRESH_TOKEN_HEADER = "x-spapi-refresh-token"

# The proxy sets these itself; a client's copy is dropped so it can't be forwarded twice
# or override the signed value (X-Request-Id: the client's goes up as the proxy's own copy, or is
# replaced when unusable).
OWNED = frozenset(
    {
        "host",
        "authorization",
        ACCESS_TOKEN_HEADER,
        "x-amzn-access-token",
        "x-amz-security-token",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-spapi-proxy-key",
        "user-agent",
        PROFILE_HEADER,
        CLIENT_RDT_HEADER,
        DATA_ELEMENTS_HEADER,
        REFRESH_TOKEN_HEADER,
        REQUEST_ID_HEADER.lower(),
    }
)

# Framing is recomputed for the body actually sent; `Expect` was answered by our server.
DROPPED_FROM_REQUEST = HOP_BY_HOP | OWNED | {"content-length", "expect"}


# What never goes back to the client from an upstream answer: hop-by-hop fields, the length,
# which the answer writer states itself from the body it frames (proxy.server.answers), and
# X-Request-Id, which the proxy echoes itself.
DROPPED_FROM_RESPONSE = HOP_BY_HOP | {"content-length", REQUEST_ID_HEADER.lower()}


def connection_tokens(connection_values: Iterable[str]) -> frozenset[str]:
    """Header names the values of `Connection` headers mark as hop-by-hop for this message."""
    return frozenset(
        token.strip().lower() for value in connection_values for token in value.split(",")
    )


def request_headers_to_forward(client: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The client's headers that go upstream, in order, duplicates kept (a plain list: the
    proxy only appends its own headers to it, which it already dropped from the client's)."""
    return kept_headers(client, DROPPED_FROM_REQUEST)


def response_headers_to_return(
    upstream: CIMultiDictProxy[str], dropped: frozenset[str] = DROPPED_FROM_RESPONSE
) -> list[tuple[str, str]]:
    return kept_headers(upstream, dropped)


def kept_headers(headers: CIMultiDictProxy[str], dropped: frozenset[str]) -> list[tuple[str, str]]:
    """`headers` in order less the `dropped` names and those their `Connection` names."""
    named = headers.getall("Connection", None)  # one C lookup; most messages name keep-alive
    if named:
        dropped = dropped | connection_tokens(named)
    return [(name, value) for name, value in headers.items() if name.lower() not in dropped]


def combined_user_agent(client_agent: str | None, proxy_agent: str) -> str:
    """Keep the client's product token (Amazon asks apps to name themselves) and add ours.

    Amazon caps User-Agent at 500 characters (docs/sp-api-facts.md §8).
    """
    if not client_agent:
        return proxy_agent[:500]
    return f"{client_agent} {proxy_agent}"[:500]
