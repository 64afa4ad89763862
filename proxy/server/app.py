"""The proxy's application: its settings, metrics and redactor, and each profile's runtime
(credentials, connection pool, forwarder) for as long as the server runs. `create_app` builds
it; the server enters `ProxyApp.running()` around its whole life."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from proxy.config.settings import Settings
from proxy.forwarding.forward import Sleep
from proxy.forwarding.operations import OperationIndex
from proxy.observability.metrics import ProxyMetrics
from proxy.observability.redact import Redactor
from proxy.observability.worker_metrics import WorkerMetrics
from proxy.profiles import ProfileRuntime, egress_proxy_secrets, running_profile
from proxy.secret import Secret

if TYPE_CHECKING:
    from proxy.fleet.runtime import Fleet


class ProxyApp:
    """The proxy's state: settings, metrics, the redactor, and each profile's runtime while the
    app runs (`running()`, entered by the server around its whole life)."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.metrics = ProxyMetrics()
        self.redactor = redactor or Redactor()
        register_config_secrets(self.redactor, settings)
        self._clock = clock
        self._sleep = sleep
        self._profiles: dict[str, ProfileRuntime] | None = None
        # The Redis shared with other proxies (shared_state), while the app runs.
        self.fleet: Fleet | None = None
        # The other worker processes' metrics (listen.workers > 1), added up at scrape time.
        self.worker_metrics: WorkerMetrics | None = None

    @property
    def profiles(self) -> dict[str, ProfileRuntime]:
        if self._profiles is None:
            raise RuntimeError("the app is not running")
        return self._profiles

    @property
    def is_running(self) -> bool:
        return self._profiles is not None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Each profile's credentials, connection pool and forwarder, closed on the way out."""
        operations = OperationIndex()
        async with AsyncExitStack() as stack:
            if self.settings.shared_state.redis_url is not None:
                # Imported only here: Redis's client and AES-GCM weigh ~25 MiB a process that
                # shares nothing should not carry.
                from proxy.fleet.runtime import Fleet

                # Made here, in the running loop: its connections belong to this loop.
                fleet = Fleet(self.settings.shared_state, self.metrics.registry, self._clock)
                stack.push_async_callback(fleet.close)
                self.fleet = fleet
            runtimes = {}
            for name, profile in self.settings.all_profiles.items():
                runtimes[name] = await stack.enter_async_context(
                    running_profile(
                        profile,
                        self.settings,
                        operations,
                        self.metrics,
                        self._clock,
                        self.redactor,
                        self._sleep,
                        self.fleet,
                    )
                )
            self._profiles = runtimes
            # Client-named sellers' forwarders share their profile's upstream and its pool.
            upstreams = [runtime.forwarder.upstream for runtime in runtimes.values()]
            self.metrics.upstream_connections = lambda: sum(u.open_connections for u in upstreams)
            self.metrics.stale_connection_retries = lambda: sum(
                u.stale_connection_retries for u in upstreams
            )
            try:
                yield
            finally:
                self._profiles = None
                self.fleet = None


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    redactor: Redactor | None = None,
    sleep: Sleep = asyncio.sleep,
) -> ProxyApp:
    return ProxyApp(settings, clock, redactor, sleep)


def register_config_secrets(redactor: Redactor, settings: Settings) -> None:
    shared = settings.shared_state
    secrets = [settings.listen.auth_token, shared.redis_url, shared.encryption_key]
    if shared.redis_url is not None:
        # The password alone too: a library's message may quote it without the rest of the URL.
        password = urlsplit(shared.redis_url.reveal()).password
        secrets.append(Secret(password) if password else None)
    # Egress proxies' URLs and passwords, configured or from HTTPS_PROXY and the like.
    secrets += [Secret(text) for text in egress_proxy_secrets(settings, os.environ)]
    for profile in settings.all_profiles.values():
        secrets += [profile.lwa.client_secret, profile.lwa.refresh_token]
        if profile.aws is not None:
            secrets += [profile.aws.secret_access_key, profile.aws.session_token]
    for secret in secrets:
        if secret:
            redactor.add(secret.reveal(), configured=True)
