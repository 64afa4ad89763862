"""The LWA access-token source: the refresh-token grant over aiohttp."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import aiohttp

from proxy.config.settings import LwaSettings
from proxy.credentials.answers import (
    AnswerRefused,
    decoded,
    is_header_safe,
    lifetime_s,
    read_capped,
)
from proxy.credentials.refreshable import Expiring
from proxy.credentials.retry import Retryable, with_retries
from proxy.errors import LwaRejected, LwaUnavailable
from proxy.observability.redact import Redactor
from proxy.secret import Secret

logger = logging.getLogger(__name__)

# LWA's default when an answer leaves expires_in out.
DEFAULT_LIFETIME_S = 3600


class LwaTokenSource:
    """Fetches one access token per call; caching is `Refreshable`'s job.

    The seller grant (`refresh_token`) by default; with a `scope`, the grantless
    `client_credentials` grant (scope and refresh_token are never sent together).
    Every text quoted from LWA goes through `redactor` before it reaches an error message,
    so an answer that echoes the client secret or a token shows `***` instead.
    """

    def __init__(
        self,
        settings: LwaSettings,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        scope: str | None = None,
        redactor: Redactor | None = None,
        client_seller: bool = False,
    ) -> None:
        """`client_seller`: the refresh token came in a request (x-spapi-refresh-token), not
        from the config; the redactor knew it from the moment it arrived, and keeps it only
        among the fetched secrets, which are bounded."""
        self._settings = settings
        self._session = session
        self._clock = clock
        self._scope = scope
        self._client_seller = client_seller
        self._redactor = redactor or Redactor()
        self._redactor.add(settings.client_secret.reveal(), configured=True)
        self._redactor.add(settings.refresh_token.reveal(), configured=not client_seller)

    @property
    def grant(self) -> str:
        return f"client_credentials grant ({self._scope})" if self._scope else "refresh_token grant"

    async def fetch(self) -> Expiring[Secret]:
        timeout_s = self._settings.timeout_s
        return await with_retries(
            self._attempt,
            "LWA token request",
            timeout_s,
            lambda: self._unavailable(f"no answer within {timeout_s:g} s (lwa.timeout_s)"),
        )

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
        try:
            # Not asked for compressed (a middlebox may compress anyway: `decoded` copes).
            async with self._session.post(
                self._settings.token_url,
                data=self._form(),
                headers={"Accept-Encoding": "identity"},
            ) as response:
                raw = await read_capped(response.content.readany, response.content_length)
                status = response.status
                body = decoded(raw, response.headers.get("Content-Encoding", ""))
        except AnswerRefused as refused:
            raise self._unusable(str(refused)) from None
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
            token = document["access_token"]
            lifetime = lifetime_s(document.get("expires_in", DEFAULT_LIFETIME_S))
        except AnswerRefused as refused:
            raise self._unusable(f"LWA answered 200, but {refused}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self._unusable("LWA answered 200 without an access_token") from None
        if not isinstance(token, str) or not is_header_safe(token):
            raise self._unusable(
                "LWA answered 200 with an access_token that is not visible ASCII "
                "(empty, or holding spaces, control or non-ASCII characters)"
            )
        self._redactor.add(token)
        return Expiring(Secret(token), started + lifetime)

    def _unavailable(self, reason: str) -> LwaUnavailable:
        return self._failed(
            reason,
            "The proxy retried within lwa.timeout_s; check network access to the token URL "
            "(lwa.token_url).",
        )

    def _unusable(self, reason: str) -> LwaUnavailable:
        # Not retried: the same server would most likely answer the same way.
        return self._failed(
            reason,
            "Check that lwa.token_url is LWA's token endpoint and that nothing in between "
            "(a proxy, a captive portal) answers in its place.",
        )

    def _failed(self, reason: str, details: str) -> LwaUnavailable:
        return LwaUnavailable(
            self._redactor.scrub(
                f"Could not get an LWA access token ({self.grant}) from "
                f"{self._settings.token_url}: {reason}."
            ),
            details,
        )

    def _rejected(self, status: int, body: bytes) -> LwaRejected:
        code, description = lwa_error_fields(body, self._redactor)
        return LwaRejected(
            f"LWA refused the {self.grant} with {code or f'HTTP {status}'}"
            + (f": {description}" if description else "."),
            self._hint(code),
            lwa_error=code,
        )

    def _hint(self, code: str) -> str:
        if self._client_seller and code in CLIENT_SELLER_HINTS:
            return CLIENT_SELLER_HINTS[code]
        return LWA_HINTS.get(code, "Check lwa.client_id, lwa.client_secret and lwa.refresh_token.")


# The same, when the seller's refresh token came in the request: the seller, not the config,
# has to change.
CLIENT_SELLER_HINTS = {
    "invalid_grant": "The refresh token sent in x-spapi-refresh-token is wrong, revoked or "
    "belongs to another app: have the seller authorize the app again and send the new one.",
}

# What a user should do about each LWA error code.
LWA_HINTS = {
    "invalid_grant": "The refresh token is wrong, revoked or belongs to another app: "
    "re-authorize the app and update lwa.refresh_token.",
    "invalid_client": "The client id or secret is wrong, or the secret was rotated: "
    "update lwa.client_id / lwa.client_secret from Seller Central.",
    "unauthorized_client": "This app may not use the refresh_token grant; check the app's "
    "registration in Seller Central.",
    "invalid_request": "LWA could not read the request; check lwa.token_url.",
}


def lwa_error_fields(body: bytes, redactor: Redactor) -> tuple[str, str]:
    """LWA's `error` and `error_description`, cut short, redacted, free of anything else."""
    try:
        document = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(document, dict):
        return "", ""
    # Cut after redacting, so a secret cut in half can't escape the redactor.
    code = redactor.scrub(str(document.get("error", "")))[:64]
    description = redactor.scrub(str(document.get("error_description", "")))[:200]
    return code, description


def describe_network_error(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "the request timed out"
    # The egress proxy by host:port, as the SP-API side names it; never its reason phrase.
    if isinstance(error, aiohttp.ClientHttpProxyError):
        proxy = error.request_info.real_url
        return (
            f"the egress proxy {proxy.host}:{proxy.port} refused the tunnel "
            f"(HTTP {error.status}); check upstream.egress_proxy or HTTPS_PROXY / NO_PROXY"
        )
    if isinstance(error, aiohttp.ClientProxyConnectionError):
        return (
            f"the egress proxy {error.host}:{error.port} could not be reached "
            f"({type(error.os_error).__name__}); check upstream.egress_proxy or HTTPS_PROXY"
        )
    return f"{type(error).__name__}: {error}"[:200]
