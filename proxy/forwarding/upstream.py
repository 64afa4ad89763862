"""One profile's upstream: sign a prepared request with its snapshot and send it over the pool."""

from __future__ import annotations

import time

from proxy.config.settings import Profile
from proxy.credentials.signing import OutgoingRequest, RequestSigner
from proxy.errors import upstream_failure
from proxy.forwarding.tokens import Snapshot
from proxy.http import UpstreamHttpError, UpstreamPool, UpstreamResponse
from proxy.observability.metrics import UNKNOWN, ProxyMetrics


class Upstream:
    def __init__(
        self,
        profile: Profile,
        pool: UpstreamPool,
        signer: RequestSigner,
        metrics: ProxyMetrics,
    ) -> None:
        settings = profile.upstream
        self.profile_name = profile.name
        self.base_url = settings.base_url
        self.user_agent = settings.effective_user_agent
        self._timeout_s = settings.timeout_s
        self._pool = pool
        self._signer = signer
        self.metrics = metrics

    async def send(self, outgoing: OutgoingRequest, sent: Snapshot) -> UpstreamResponse:
        """Sign `outgoing` with what `sent` holds and send it; SP-API's reply, body unread."""
        headers = self._signer.headers(outgoing, sent.token, sent.aws)
        target = outgoing.raw_path
        if outgoing.query:
            target += "?" + outgoing.query
        started = time.perf_counter()
        try:
            # No asyncio.timeout here (a timer per request costs ~10 us): the pool bounds the
            # wait for a free connection, the connect, and each silence by upstream.timeout_s.
            # Sent as is: the headers carry Host and, with a body, Content-Length.
            reply = await self._pool.request(outgoing.method, target, headers, outgoing.body)
        except UpstreamHttpError as error:
            raise upstream_failure(error, self.base_url, self._timeout_s) from None
        op = sent.op
        self.metrics.observe_upstream_latency(
            time.perf_counter() - started,
            UNKNOWN if op is None else op.name,
            outgoing.method,
            reply.status,
            self.profile_name,
        )
        return reply

    @property
    def open_connections(self) -> int:
        return self._pool.connections

    @property
    def stale_connection_retries(self) -> int:
        return self._pool.stale_resends
