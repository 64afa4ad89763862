"""Restricted data tokens (RDTs) from SP-API's Tokens API (docs/sp-api-facts.md §6).

The fetch goes straight to the profile's connection pool, signed like any forwarded request
but with the seller's LWA token; its answer is read bounded and checked like LWA's and STS's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from proxy.config.settings import Profile
from proxy.credentials.answers import (
    AnswerRefused,
    decoded,
    is_header_safe,
    lifetime_s,
    read_capped,
)
from proxy.credentials.refreshable import Expiring
from proxy.credentials.signing import OutgoingRequest, RequestSigner
from proxy.credentials.store import CredentialStore
from proxy.errors import RdtRejected, UpstreamUnreachable, upstream_failure
from proxy.http import UpstreamHttpError, UpstreamPool, UpstreamResponse
from proxy.observability.redact import Redactor
from proxy.secret import Secret

RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"


class RdtSource:
    """Fetches one RDT per call; caching and single-flight are the caller's (AccessTokens)."""

    def __init__(
        self,
        profile: Profile,
        credentials: CredentialStore,
        pool: UpstreamPool,
        signer: RequestSigner,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = profile.upstream
        self._base_url = settings.base_url
        self._timeout_s = settings.timeout_s
        # The pool never decompresses, so the answer is asked for plain (and decoded if a
        # middlebox compresses it anyway).
        self._headers = (
            ("Content-Type", "application/json"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", settings.effective_user_agent),
        )
        self._credentials = credentials
        self._pool = pool
        self._signer = signer
        self._clock = clock

    async def fetch(
        self, method: str, path: str, data_elements: tuple[str, ...]
    ) -> Expiring[Secret]:
        """A restricted data token for one method and path."""
        resource: dict[str, object] = {"method": method, "path": path}
        if data_elements:
            resource["dataElements"] = list(data_elements)
        body = json.dumps({"restrictedResources": [resource]}).encode()
        outgoing = OutgoingRequest("POST", RDT_PATH, "", body, self._headers)
        credentials = self._credentials
        token = await credentials.lwa_token()
        pending_aws = credentials.aws_credentials()
        aws = None if pending_aws is None else await pending_aws
        headers = self._signer.headers(outgoing, token, aws)
        started = self._clock()
        try:
            reply = await self._pool.request("POST", RDT_PATH, headers, body)
        except UpstreamHttpError as error:
            raise upstream_failure(error, self._base_url, self._timeout_s) from None
        redactor = credentials.redactor
        try:
            raw = await read_capped(reply.readany, content_length(reply))
            answer = decoded(raw, reply.headers.get("Content-Encoding", ""))
        except AnswerRefused as refused:
            reason = redactor.scrub(str(refused))
            raise RdtRejected(
                f"The Tokens API's answer for {method} {path} is unusable: {reason}."
            ) from None
        except UpstreamHttpError as error:
            raise UpstreamUnreachable(
                f"SP-API's answer broke off before its end ({error.what}).",
                "Retry the request; if it keeps happening, check the network to the upstream.",
            ) from None
        finally:
            reply.release()
        if reply.status != 200:
            raise rdt_refused(method, path, reply, answer, redactor)
        return rdt_of(answer, method, path, started, redactor)


def content_length(reply: UpstreamResponse) -> int | None:
    value = reply.headers.get("Content-Length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def rdt_of(
    answer: bytes, method: str, path: str, started: float, redactor: Redactor
) -> Expiring[Secret]:
    """The token and its expiry from a 200 of the Tokens API, each checked before use."""
    what = f"{method} {path}"
    try:
        document = json.loads(answer)
        token = document["restrictedDataToken"]
        lifetime = lifetime_s(document["expiresIn"])
    except AnswerRefused as refused:
        raise RdtRejected(f"The Tokens API answered 200 for {what}, but {refused}.") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RdtRejected(f"The Tokens API answered 200 without a token for {what}.") from None
    if not isinstance(token, str) or not is_header_safe(token):
        raise RdtRejected(
            f"The Tokens API answered 200 for {what} with a token that is not visible ASCII."
        )
    redactor.add(token)
    return Expiring(Secret(token), started + lifetime)


def rdt_refused(
    method: str, path: str, reply: UpstreamResponse, answer: bytes, redactor: Redactor
) -> RdtRejected:
    """Amazon's own reason (error code and message, redacted) for refusing an RDT."""
    reason = f"HTTP {reply.status}"
    try:
        first = json.loads(answer)["errors"][0]
        reason = f"{first.get('code', reason)}: {first.get('message', '')}".strip(": ")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        pass
    # Redacted before being cut, so a secret cut in half can't slip past the redactor.
    reason = redactor.scrub(reason)[:200]
    request_id = redactor.scrub(reply.headers.get("x-amzn-RequestId", "-"))[:64]
    return RdtRejected(
        f"SP-API refused a restricted data token for {method} {path}: {reason}.",
        "Check that the app has the role for this personal data in Seller Central, or send "
        f"your own RDT in x-spapi-rdt. x-amzn-RequestId: {request_id}",
        status=502 if reply.status >= 500 else reply.status,
    )
