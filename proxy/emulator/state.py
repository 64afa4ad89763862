"""What one emulator instance remembers: issued credentials, counters, received requests."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from proxy.emulator.catalog import Catalog
from proxy.emulator.config import EmulatorConfig
from proxy.emulator.credentials import CredentialStore
from proxy.emulator.sigv4 import MASKED_HEADERS
from proxy.emulator.throttle import Throttle, usage_plans
from proxy.emulator.tokens import TokenStore
from proxy.emulator.workflows import Workflows

MAX_RECEIVED = 1000
_SECRET_HEADERS = MASKED_HEADERS | {"authorization"}


@dataclass(frozen=True)
class ReceivedRequest:
    """One SP-API request as it arrived (bytes untouched) and the status it got."""

    method: str
    raw_target: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = field(repr=False)
    signature_ok: bool | None
    status: int
    operation: str | None = None
    token_kind: str | None = None  # seller, grantless or rdt; None when no valid token came

    def as_call(self) -> dict[str, Any]:
        """What ``GET /_emulator/calls`` lists: no header or body, so no token or signature."""
        path, _, query = self.raw_target.partition("?")
        return {
            "method": self.method,
            "path": path,
            "query": query,
            "operation": self.operation,
            "tokenKind": self.token_kind,
            "signatureOk": self.signature_ok,
            "status": self.status,
        }

    def header(self, name: str) -> list[str]:
        """Every value received for ``name`` (case-insensitive), in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self) -> str:
        # Tokens and signatures never reach a test report or a log through repr().
        shown = [(k, "***" if k.lower() in _SECRET_HEADERS else v) for k, v in self.headers]
        return (
            f"ReceivedRequest({self.method} {self.raw_target.partition('?')[0]!r}, "
            f"status={self.status}, signature_ok={self.signature_ok}, headers={shown}, "
            f"body=<{len(self.body)} bytes>)"
        )


class EmulatorState:
    """``app[EMULATOR_STATE]``: what tests and users inspect, plus the emulator's stores."""

    def __init__(self, config: EmulatorConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self.lwa_calls: collections.Counter[str] = collections.Counter()
        self.sts_calls = 0
        self.received: collections.deque[ReceivedRequest] = collections.deque(maxlen=MAX_RECEIVED)
        self.tokens = TokenStore(config.clock, max_lifetime_s=config.token_lifetime_s)
        self.credentials = CredentialStore(config)
        plans = usage_plans() if config.throttle == "models" else None
        self.throttle = Throttle(config.rate_per_s, config.burst, config.clock, plans)
        self.workflows = Workflows(config)
