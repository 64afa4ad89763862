"""The upstream HTTP/1.1 client: a keep-alive pool (pool.py) of asyncio connections
(connection.py) whose answers llhttp frames (through httptools), with the few rules llhttp
leaves to us (parse.py) and errors that never quote the peer (errors.py)."""

from proxy.http.connection import UpstreamResponse
from proxy.http.errors import (
    UpstreamConnectError,
    UpstreamHttpError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from proxy.http.parse import request_head
from proxy.http.pool import UpstreamPool

__all__ = [
    "UpstreamConnectError",
    "UpstreamHttpError",
    "UpstreamPool",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "UpstreamTimeoutError",
    "request_head",
]
