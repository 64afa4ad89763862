"""What can go wrong talking to the upstream; messages name the failure, never the peer's bytes."""

from __future__ import annotations


class UpstreamHttpError(Exception):
    """Base of the client's errors: `origin` (scheme://host:port) and `what` went wrong."""

    def __init__(self, origin: str, what: str) -> None:
        super().__init__(f"{origin}: {what}")
        self.origin = origin
        self.what = what


class UpstreamConnectError(UpstreamHttpError):
    """Connecting failed: refused, DNS, TLS handshake or verification; or the pool is closed."""


class EgressProxyError(UpstreamConnectError):
    """The egress proxy could not be reached, refused the tunnel, or broke it off; the message
    names the proxy by host:port only (its URL may hold a password)."""


class UpstreamTimeoutError(UpstreamHttpError):
    """No connection in time, no answer head within the deadline, or a body silent too long."""


class UpstreamProtocolError(UpstreamHttpError):
    """A malformed answer, or the connection dropped before the answer's end."""


class StaleConnection(Exception):
    """A reused connection closed before the first byte of the answer: safe to re-send."""
