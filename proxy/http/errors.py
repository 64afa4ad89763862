"""What can go wrong talking to the upstream; messages name the failure, never the peer's bytes.

UpstreamHttpError            base; `origin` is scheme://host:port
├── UpstreamConnectError     connecting failed: refused, DNS, TLS handshake or verification
├── UpstreamTimeoutError     connect timeout, no answer head within `read_timeout_s` of
│                            sending, or a body silent for `read_timeout_s`
└── UpstreamProtocolError    malformed answer, or the connection dropped mid-answer
"""

from __future__ import annotations


class UpstreamHttpError(Exception):
    """Base of the client's errors: `origin` and `what` went wrong, never what the peer sent."""

    def __init__(self, origin: str, what: str) -> None:
        super().__init__(f"{origin}: {what}")
        self.origin = origin
        self.what = what


class UpstreamConnectError(UpstreamHttpError):
    pass


class UpstreamTimeoutError(UpstreamHttpError):
    pass


class UpstreamProtocolError(UpstreamHttpError):
    pass


class StaleConnection(Exception):
    """A reused connection closed before the first byte of the answer: safe to re-send."""
