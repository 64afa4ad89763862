"""One profile's credentials: seller and grantless LWA tokens and, when signing, AWS keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

from proxy.config.settings import DEFAULT_PROFILE, Profile
from proxy.credentials.lwa import LwaTokenSource
from proxy.credentials.refreshable import Refreshable
from proxy.credentials.sharing import CredentialSharing, TokenFetch
from proxy.credentials.sts import AwsCredentialSource
from proxy.credentials.types import AwsCredentials
from proxy.errors import CredentialError, SharedStateUnavailable
from proxy.observability.redact import Redactor
from proxy.secret import Secret


class CredentialStore:
    def __init__(
        self,
        profile: Profile,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        on_refresh: Callable[[str, bool], None] | None = None,
        redactor: Redactor | None = None,
        sharing: CredentialSharing | None = None,
        app: CredentialStore | None = None,
    ) -> None:
        """`app`: the profile's own store, when this one is for a seller a request named
        (x-spapi-refresh-token); its AWS keys and grantless tokens are the app's, not a
        seller's, so they are used from there rather than fetched again."""
        self._profile = profile
        self._app = app
        self._session = session
        self._clock = clock
        self._on_refresh = on_refresh
        # The proxy's one redactor (the logs' too): the sources teach it every credential they
        # fetch, and everything LWA, STS or the Tokens API quote passes through it before it
        # reaches an error body.
        self.redactor = redactor or Redactor()
        # Other proxies' copies of the tokens (shared_state): every fetch asks them first.
        self.sharing = sharing
        self.lwa = self._lwa_refreshable(scope=None)
        # Grantless tokens, one per scope; only two scopes exist
        # (docs/sp-api-facts.md §4).
        self._grantless: dict[str, Refreshable[Secret]] = {}
        self.aws: Refreshable[AwsCredentials] | None = None
        if app is not None:
            self.aws = app.aws
        elif profile.aws is not None:
            source = AwsCredentialSource(
                profile.aws,
                profile.upstream.signing_region,
                clock,
                redactor=self.redactor,
                egress_proxy=profile.upstream.egress_proxy,
            )
            self.aws = Refreshable(self._label(source.kind), source.fetch, clock, on_refresh)

    def _label(self, source: str) -> str:
        """Source name for logs and metrics: `lwa`, or `lwa:eu` for a named profile."""
        if self._app is not None:
            # One name for every client-named seller: a label per seller would grow the metrics
            # without bound, and a seller's hash means nothing in a log line.
            source = "lwa-client-seller"
        name = self._profile.name
        return source if name == DEFAULT_PROFILE else f"{source}:{name}"

    def _lwa_refreshable(self, scope: str | None) -> Refreshable[Secret]:
        source = LwaTokenSource(
            self._profile.lwa,
            self._session,
            self._clock,
            scope=scope,
            redactor=self.redactor,
            client_seller=self._app is not None,
        )
        name = self._label("lwa" if scope is None else "lwa-grantless")
        fetch: TokenFetch = source.fetch
        if self.sharing is not None:
            if scope is None:
                fetch = self.sharing.lwa_token(fetch)
            else:
                fetch = self.sharing.grantless_token(scope, fetch)
        return Refreshable(name, fetch, self._clock, self._on_refresh)

    def lwa_token(self) -> Awaitable[Secret]:
        return self.lwa.get()  # the coroutine itself, not one more wrapped around it

    async def grantless_token(self, scope: str) -> Secret:
        if self._app is not None:
            return await self._app.grantless_token(scope)
        if scope not in self._grantless:
            self._grantless[scope] = self._lwa_refreshable(scope)
        return await self._grantless[scope].get()

    def aws_credentials(self) -> Awaitable[AwsCredentials] | None:
        """The current AWS credentials to await, or None when signing is off."""
        return None if self.aws is None else self.aws.get()

    def token_rejected(self, token: Secret) -> None:
        if self.sharing is not None:
            self.sharing.refuse(token)
        self.lwa.invalidate(token)
        if self._app is None:
            self.grantless_rejected(token)
        else:
            self._app.grantless_rejected(token)

    def grantless_rejected(self, token: Secret) -> None:
        for grantless in self._grantless.values():
            grantless.invalidate(token)

    async def readiness(self, timeout_s: float) -> list[str]:
        """Why credentials can't be had now, one reason per failing source (empty: ready)."""
        problems: list[str] = []
        for source in (self.lwa, self.aws):
            if source is None:
                continue
            try:
                async with asyncio.timeout(timeout_s):
                    await source.get()
            except (CredentialError, SharedStateUnavailable) as error:
                problems.append(f"{source.name}: {error.code}: {error.message}")
            except TimeoutError:
                problems.append(f"{source.name}: no answer within {timeout_s:g} s")
        return problems
