"""What the access line says about one request beyond its method, path, status and time: filled
in by the front door and the forwarder as the request goes, read once when the line is written."""

from __future__ import annotations


class AccessFacts:
    """The request id, and, once known, the profile, the operation, the kind of token sent and
    Amazon's x-amzn-RequestId. None means "not known": the proxy answered before learning it.

    A slotted class rather than a dataclass: one is made per request on the hot path.
    """

    __slots__ = ("amazon_request_id", "operation", "profile", "request_id", "token_kind")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.profile: str | None = None
        self.operation: str | None = None  # SP-API's operationId; "unknown" for an unknown path
        self.token_kind: str | None = None  # lwa, rdt, grantless or client-rdt
        self.amazon_request_id: str | None = None
