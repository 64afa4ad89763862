"""One profile's upstream: sign a prepared request with a token and send it over the pool."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

from proxy.config.settings import Profile
from proxy.credentials.answers import (
    AnswerRefused,
    decoded,
    is_header_safe,
    lifetime_s,
    read_capped,
)
from proxy.credentials.grants import LWA, Snapshot
from proxy.credentials.refreshable import Expiring
from proxy.credentials.store import CredentialStore
from proxy.credentials.types import AwsCredentials
from proxy.errors import RdtRejected, UpstreamTimeout, UpstreamUnreachable
from proxy.http import (
    UpstreamHttpError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeoutError,
)
from proxy.metrics import ProxyMetrics
from proxy.redact import Redactor
from proxy.secret import Secret
from proxy.signing import EMPTY_SHA256, SigV4Signer, amz_date

logger = logging.getLogger(__name__)

RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"


class OutgoingRequest(NamedTuple):
    """What goes upstream, fixed once per client request (a replay reuses it as is)."""

    method: str
    raw_path: str
    query: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]  # the client's, less the ones the proxy owns


class Upstream:
    def __init__(
        self,
        profile: Profile,
        pool: UpstreamPool,
        credentials: CredentialStore,
        metrics: ProxyMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = profile.upstream
        self.base_url = settings.base_url
        self.user_agent = settings.effective_user_agent
        self._host = urlsplit(self.base_url).netloc
        self._timeout_s = settings.timeout_s
        self._token_headers = profile.lwa.token_headers
        self._pool = pool
        self._credentials = credentials
        self._metrics = metrics
        self._signer = SigV4Signer(settings.signing_region) if profile.aws else None
        self._clock = clock

    async def send(self, outgoing: OutgoingRequest, sent: Snapshot) -> UpstreamResponse:
        """Sign `outgoing` with what `sent` holds and send it; SP-API's reply, body unread."""
        headers = self._signed_headers(outgoing, sent.token, sent.aws)
        target = outgoing.raw_path
        if outgoing.query:
            target += "?" + outgoing.query
        started = time.perf_counter()
        try:
            # No asyncio.timeout here (a timer per request costs ~10 us): the pool bounds the
            # wait for a free connection, the connect, and each silence by upstream.timeout_s.
            # Sent as is: the headers carry Host and, with a body, Content-Length.
            response = await self._pool.request(outgoing.method, target, headers, outgoing.body)
        except UpstreamTimeoutError:
            raise UpstreamTimeout(
                f"SP-API did not answer within {self._timeout_s:g} s (upstream.timeout_s).",
                "Retry later, or raise upstream.timeout_s for slow operations such as reports.",
            ) from None
        except UpstreamProtocolError as error:
            raise UpstreamUnreachable(
                f"The answer of SP-API at {self.base_url} could not be read: it {error.what}.",
                "Retry the request; if it keeps happening, check what sits between the proxy "
                "and the upstream (upstream.endpoint, a middlebox).",
            ) from None
        except UpstreamHttpError as error:
            raise UpstreamUnreachable(
                f"Could not connect to SP-API at {self.base_url}: {error.what}.",
                "Check network access to the upstream (upstream.region, upstream.endpoint).",
            ) from None
        self._metrics.observe_upstream_latency(time.perf_counter() - started)
        return response

    def _signed_headers(
        self, outgoing: OutgoingRequest, token: Secret, aws: AwsCredentials | None
    ) -> list[tuple[str, str]]:
        owned: dict[str, str] = {"host": self._host}
        for name in self._token_headers:
            owned[name] = token.reveal()
        if self._signer is not None and aws is not None:
            owned["x-amz-date"] = amz_date(self._clock())
            if aws.session_token:
                owned["x-amz-security-token"] = aws.session_token.reveal()
            body = outgoing.body or b""
            payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
            owned["authorization"] = self._signer.authorization(
                method=outgoing.method,
                raw_path=outgoing.raw_path,
                query=outgoing.query,
                headers=owned,
                payload_sha256=payload_hash,
                credentials=aws,
                amz_date=owned["x-amz-date"],
            )
        # The client's copies of these were dropped when the request was prepared.
        headers = [*outgoing.headers, *owned.items()]
        if outgoing.body is not None:
            headers.append(("Content-Length", str(len(outgoing.body))))
        return headers

    async def fetch_rdt(
        self, method: str, path: str, data_elements: tuple[str, ...]
    ) -> Expiring[Secret]:
        """A restricted data token for one method and path, from the Tokens API."""
        resource: dict[str, object] = {"method": method, "path": path}
        if data_elements:
            resource["dataElements"] = list(data_elements)
        body = json.dumps({"restrictedResources": [resource]}).encode()
        # The pool never decompresses, so the answer is asked for plain (and decoded if a
        # middlebox compresses it anyway).
        headers = (
            ("Content-Type", "application/json"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", self.user_agent),
        )
        outgoing = OutgoingRequest("POST", RDT_PATH, "", body, headers)
        started = self._clock()
        token = await self._credentials.lwa_token()
        pending_aws = self._credentials.aws_credentials()
        aws = None if pending_aws is None else await pending_aws
        response = await self.send(outgoing, Snapshot(token, LWA, aws, None, None))
        redactor = self._credentials.redactor
        try:
            raw = await read_capped(response.readany, content_length(response))
            answer = decoded(raw, response.headers.get("Content-Encoding", ""))
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
            response.release()
        if response.status != 200:
            raise rdt_refused(method, path, response, answer, redactor)
        return rdt_of(answer, method, path, started, redactor)


def content_length(response: UpstreamResponse) -> int | None:
    value = response.headers.get("Content-Length", "")
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
    method: str, path: str, response: UpstreamResponse, answer: bytes, redactor: Redactor
) -> RdtRejected:
    """Amazon's own reason (error code and message, redacted) for refusing an RDT."""
    reason = f"HTTP {response.status}"
    try:
        first = json.loads(answer)["errors"][0]
        reason = f"{first.get('code', reason)}: {first.get('message', '')}".strip(": ")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        pass
    # Redacted before being cut, so a secret cut in half can't slip past the redactor.
    reason = redactor.scrub(reason)[:200]
    request_id = redactor.scrub(response.headers.get("x-amzn-RequestId", "-"))[:64]
    return RdtRejected(
        f"SP-API refused a restricted data token for {method} {path}: {reason}.",
        "Check that the app has the role for this personal data in Seller Central, or send "
        f"your own RDT in x-spapi-rdt. x-amzn-RequestId: {request_id}",
        status=502 if response.status >= 500 else response.status,
    )
