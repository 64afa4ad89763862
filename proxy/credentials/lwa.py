"""The LWA access-token source: the refresh-token grant over aiohttp (FACTS.md §4)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiohttp

from proxy.credentials.refreshable import Expiring
from proxy.errors import LwaRejected, LwaUnavailable
from proxy.redact import mask_token_shapes
from proxy.retry import Retryable, with_retries
from proxy.secret import Secret
from proxy.settings import LwaSettings

logger = logging.getLogger(__name__)


class LwaTokenSource:
    """Fetches one access token per call; caching is `Refreshable`'s job.

    The seller grant (`refresh_token`) by default; with a `scope`, the grantless
    `client_credentials` grant (FACTS.md §4: scope and refresh_token are never sent together).
    """

    def __init__(
        self,
        settings: LwaSettings,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        on_new_secret: Callable[[str], None] | None = None,
        scope: str | None = None,
    ) -> None:
        self._settings = settings
        self._session = session
        self._clock = clock
        self._on_new_secret = on_new_secret
        self._scope = scope

    @property
    def grant(self) -> str:
        return f"client_credentials grant ({self._scope})" if self._scope else "refresh_token grant"

    async def fetch(self) -> Expiring[Secret]:
        return await with_retries(self._attempt, "LWA token request")

    def _form(self) -> dict[str, str]:
        client = {
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret.reveal(),
        }
        if self._scope:
            return {"grant_type": "client_credentials", "scope": self._scope, **client}
        return {
            "grant_type": "refresh_token",
            "refresh_token": self._settings.refresh_token.reveal(),
            **client,
        }

    async def _attempt(self) -> Expiring[Secret]:
        started = self._clock()
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        try:
            async with self._session.post(
                self._settings.token_url, data=self._form(), timeout=timeout
            ) as response:
                body = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise Retryable(self._unavailable(describe_network_error(error))) from None
        if status >= 500:
            raise Retryable(self._unavailable(f"LWA answered HTTP {status}"))
        if status >= 400:
            raise self._rejected(status, body)
        return self._parse_token(body, started)

    def _parse_token(self, body: bytes, started: float) -> Expiring[Secret]:
        try:
            document = json.loads(body)
            token = str(document["access_token"])
            expires_in = float(document.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise self._unavailable("LWA answered 200 without an access_token") from None
        if self._on_new_secret is not None:
            self._on_new_secret(token)
        return Expiring(Secret(token), started + expires_in)

    def _unavailable(self, reason: str) -> LwaUnavailable:
        return LwaUnavailable(
            f"Could not get an LWA access token ({self.grant}) from "
            f"{self._settings.token_url}: {reason}.",
            "The proxy retried; check network access to the token URL (lwa.token_url).",
        )

    def _rejected(self, status: int, body: bytes) -> LwaRejected:
        code, description = lwa_error_fields(body)
        return LwaRejected(
            f"LWA refused the {self.grant} with {code or f'HTTP {status}'}"
            + (f": {description}" if description else "."),
            LWA_HINTS.get(code, "Check lwa.client_id, lwa.client_secret and lwa.refresh_token."),
            lwa_error=code,
        )


# What a user should do about each LWA error code (FACTS.md §4).
LWA_HINTS = {
    "invalid_grant": "The refresh token is wrong, revoked or belongs to another app: "
    "re-authorize the app and update lwa.refresh_token.",
    "invalid_client": "The client id or secret is wrong, or the secret was rotated: "
    "update lwa.client_id / lwa.client_secret from Seller Central.",
    "unauthorized_client": "This app may not use the refresh_token grant; check the app's "
    "registration in Seller Central.",
    "invalid_request": "LWA could not read the request; check lwa.token_url.",
}


def lwa_error_fields(body: bytes) -> tuple[str, str]:
    """LWA's `error` and `error_description`, cut short and free of anything else it sent."""
    try:
        document = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(document, dict):
        return "", ""
    code = str(document.get("error", ""))[:64]
    description = mask_token_shapes(str(document.get("error_description", ""))[:200])
    return code, description


def describe_network_error(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "the request timed out"
    return f"{type(error).__name__}: {error}"[:200]
