"""Bearer tokens the emulator issued (LWA seller, LWA grantless, RDT) and their expiry.

Tokens stay remembered for a grace period after they expire so that an expired token is told
apart from one the emulator never issued, as Amazon's two different messages do.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

# How long an expired token is still recognised as "expired" rather than "invalid".
EXPIRED_GRACE_S = 86400.0
MAX_TOKENS = 100_000


class TokenKind(enum.Enum):
    SELLER = "seller"  # LWA refresh_token grant
    GRANTLESS = "grantless"  # LWA client_credentials grant
    RDT = "rdt"  # Tokens API restricted data token


@dataclass(frozen=True)
class RestrictedResource:
    method: str
    path: str
    data_elements: tuple[str, ...] = ()


@dataclass(frozen=True)
class IssuedToken:
    kind: TokenKind
    expires_at: float
    scope: str | None = None
    resources: tuple[RestrictedResource, ...] = ()


class TokenStore:
    """A bounded memory of issued tokens keyed by their value."""

    def __init__(
        self, clock: Callable[[], float], max_lifetime_s: float, maxsize: int = MAX_TOKENS
    ) -> None:
        self._clock = clock
        # Expiry is checked against IssuedToken.expires_at; the cache's TTL only bounds how
        # long (and the maxsize how many) tokens are remembered.
        self._tokens: TTLCache[str, IssuedToken] = TTLCache(
            maxsize=maxsize, ttl=max_lifetime_s + EXPIRED_GRACE_S, timer=clock
        )

    def issue(
        self,
        kind: TokenKind,
        lifetime_s: float,
        *,
        scope: str | None = None,
        resources: tuple[RestrictedResource, ...] = (),
    ) -> str:
        prefix = "Atz.sprdt|" if kind is TokenKind.RDT else "Atza|"
        token = prefix + secrets.token_urlsafe(48)
        self._tokens[token] = IssuedToken(kind, self._clock() + lifetime_s, scope, resources)
        return token

    def lookup(self, token: str) -> IssuedToken | None:
        """The token's record, expired or not; None when never issued (or long forgotten)."""
        return self._tokens.get(token)

    def is_expired(self, issued: IssuedToken) -> bool:
        return self._clock() >= issued.expires_at
