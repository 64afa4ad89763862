"""The credentials one proxy app holds: an LWA token and, when signing, AWS keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from proxy.credentials.lwa import LwaTokenSource
from proxy.credentials.refreshable import Refreshable
from proxy.credentials.sts import AwsCredentialSource
from proxy.credentials.types import AwsCredentials
from proxy.errors import CredentialError
from proxy.secret import Secret
from proxy.settings import Settings


class CredentialStore:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        on_refresh: Callable[[str, bool], None] | None = None,
        on_new_secret: Callable[[str], None] | None = None,
    ) -> None:
        lwa = LwaTokenSource(settings.lwa, session, clock, on_new_secret)
        self.lwa: Refreshable[Secret] = Refreshable("lwa", lwa.fetch, clock, on_refresh)
        self.aws: Refreshable[AwsCredentials] | None = None
        if settings.aws is not None:
            source = AwsCredentialSource(
                settings.aws, settings.upstream.signing_region, clock, on_new_secret
            )
            self.aws = Refreshable(source.kind, source.fetch, clock, on_refresh)

    async def lwa_token(self) -> Secret:
        return await self.lwa.get()

    async def aws_credentials(self) -> AwsCredentials | None:
        return None if self.aws is None else await self.aws.get()

    def token_rejected(self, token: Secret) -> None:
        self.lwa.invalidate(token)

    async def readiness(self, timeout_s: float) -> list[str]:
        """Why credentials can't be had now, one reason per failing source (empty: ready)."""
        problems: list[str] = []
        for source in (self.lwa, self.aws):
            if source is None:
                continue
            try:
                async with asyncio.timeout(timeout_s):
                    await source.get()
            except CredentialError as error:
                problems.append(f"{source.name}: {error.code}: {error.message}")
            except TimeoutError:
                problems.append(f"{source.name}: no answer within {timeout_s:g} s")
        return problems
