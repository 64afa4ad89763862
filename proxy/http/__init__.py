"""The upstream HTTP/1.1 client: a keep-alive pool (pool.py) of asyncio connections
(connection.py) whose answers llhttp frames (through httptools), with the few rules llhttp
leaves to us (parse.py), errors that never quote the peer (errors.py), and the choice of an
egress proxy from the config or HTTPS_PROXY / NO_PROXY (egress.py)."""

from proxy.http.connection import UpstreamResponse
from proxy.http.egress import EgressProxy, EgressProxyInvalid, egress_proxy_for
from proxy.http.errors import (
    EgressProxyError,
    UpstreamConnectError,
    UpstreamHttpError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from proxy.http.parse import request_head
from proxy.http.pool import UpstreamPool

__all__ = [
    "EgressProxy",
    "EgressProxyError",
    "EgressProxyInvalid",
    "UpstreamConnectError",
    "UpstreamHttpError",
    "UpstreamPool",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "UpstreamTimeoutError",
    "egress_proxy_for",
    "request_head",
]
