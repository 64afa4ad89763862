"""Which token a request goes upstream with: the seller's LWA token, a grantless token, a
restricted data token (RDT) the proxy fetched, or an RDT the client brought
(docs/sp-api-facts.md §4, §6); and the snapshot of everything one attempt is sent with."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import NamedTuple

from cachetools import LRUCache

from proxy.credentials.rdt import RdtSource
from proxy.credentials.refreshable import Expiring, Refreshable
from proxy.credentials.store import CredentialStore
from proxy.credentials.types import AwsCredentials
from proxy.forwarding.diagnosis import CLIENT_RDT, GRANTLESS, LWA, RDT
from proxy.forwarding.headers import (
    ACCESS_TOKEN_HEADER,
    CLIENT_RDT_HEADER,
    DATA_ELEMENTS_HEADER,
    RDT_PREFIX,
)
from proxy.forwarding.operations import Operation
from proxy.observability.metrics import ProxyMetrics
from proxy.secret import Secret

RdtKey = tuple[str, str, tuple[str, ...]]  # method, path, data elements


# NamedTuples rather than frozen dataclasses: made on every request, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs several times as much.
class Snapshot(NamedTuple):
    """Everything one upstream attempt is sent with, taken once, after the attempt's wait for
    quota: a token chosen before a long wait could expire while the request waits."""

    token: Secret
    token_kind: str  # LWA, GRANTLESS, RDT or CLIENT_RDT
    aws: AwsCredentials | None  # what the request is signed with; None when signing is off
    op: Operation | None
    bucket: Hashable  # the operation's rate-limit bucket


class Wanted(NamedTuple):
    """What the client asked for in the proxy's own request headers."""

    client_rdt: str | None  # x-spapi-rdt, or an RDT in x-amz-access-token: forwarded as is
    data_elements: tuple[str, ...]  # x-spapi-data-elements, e.g. ("buyerInfo", "shippingAddress")


NOTHING_WANTED = Wanted(None, ())


class AccessTokens:
    def __init__(
        self,
        credentials: CredentialStore,
        rdt_source: RdtSource,
        rdt_enabled: bool,
        max_cached_rdts: int,
        clock: Callable[[], float] = time.time,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self._credentials = credentials
        self._metrics = metrics or ProxyMetrics()
        self._rdt_source = rdt_source
        self._rdt_enabled = rdt_enabled
        self._clock = clock
        # One cached RDT per (method, path, data elements): bounded, so a million order ids
        # can't grow memory without limit; each entry refreshes early and single-flight.
        self._rdts: LRUCache[RdtKey, Refreshable[Secret]] = LRUCache(maxsize=max_cached_rdts)

    async def snapshot(
        self, op: Operation | None, bucket: Hashable, method: str, path: str, wanted: Wanted
    ) -> Snapshot:
        """The token (and AWS credentials when signing) to send `method path` with now."""
        credentials = self._credentials
        if wanted.client_rdt:
            token, kind = Secret(wanted.client_rdt), CLIENT_RDT
        elif op is not None and op.grantless_scope:
            token, kind = await credentials.grantless_token(op.grantless_scope), GRANTLESS
        elif self._rdt_enabled and op is not None and op.needs_rdt(bool(wanted.data_elements)):
            elements = wanted.data_elements if op.data_elements else ()
            token, kind = await self._rdt((method, path, elements)), RDT
        else:
            token, kind = await credentials.lwa_token(), LWA
        pending_aws = credentials.aws_credentials()
        aws = None if pending_aws is None else await pending_aws
        return Snapshot(token, kind, aws, op, bucket)

    def rejected(self, snapshot: Snapshot) -> bool:
        """Forget a token SP-API refused; True when fetching another one may help."""
        if snapshot.token_kind == CLIENT_RDT:
            return False  # the client's own token: the client has to fetch a new one
        token = snapshot.token
        self._credentials.token_rejected(token)
        for key, cached in list(self._rdts.items()):
            if cached.cached is not None and cached.cached.value == token:
                del self._rdts[key]
        return True

    async def _rdt(self, key: RdtKey) -> Secret:
        cached = self._rdts.get(key)
        if cached is not None and cached.serves_cached(self._clock()):
            self._metrics.count_rdt(fetched=False)
        if cached is None:
            method, path, elements = key

            async def fetch() -> Expiring[Secret]:
                self._metrics.count_rdt(fetched=True)
                return await self._rdt_source.fetch(method, path, elements)

            sharing = self._credentials.sharing
            shared = fetch if sharing is None else sharing.rdt(method, path, elements, fetch)
            cached = self._rdts[key] = Refreshable("rdt", shared, self._clock)
        return await cached.get()


def wanted_from(headers: Mapping[str, str]) -> Wanted:
    """The client's RDT and x-spapi-data-elements header, normalised.

    The client's RDT is x-spapi-rdt, or else an RDT in x-amz-access-token: an SDK that fetched
    one itself sends it there, and replacing it with the LWA token would make SP-API leave the
    personal data out without an error. Any other token there is the proxy's to replace.
    """
    rdt = headers.get(CLIENT_RDT_HEADER) or None
    if rdt is None:
        token = headers.get(ACCESS_TOKEN_HEADER)
        if token is not None and token.startswith(RDT_PREFIX):
            rdt = token
    raw_elements = headers.get(DATA_ELEMENTS_HEADER) or ""
    if rdt is None and not raw_elements:
        return NOTHING_WANTED  # nearly every request
    elements = tuple(sorted({part.strip() for part in raw_elements.split(",") if part.strip()}))
    return Wanted(rdt, elements)
