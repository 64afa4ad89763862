"""`Refreshable[T]`: a cached credential with early refresh and single-flight.

Modelled on botocore's `RefreshableCredentials` (and aiobotocore's async port), with the
windows scaled to the credential's lifetime so a token that lives an hour and a test token
that lives three seconds are both refreshed in time:

    |<--------------- lifetime --------------->|
    fetched            advisory      mandatory  expires
                         |<-- one caller -->|<-- everyone waits -->|

- Fresh: the cached value is returned.
- Advisory window: the first caller starts one background refresh and everybody keeps
  using the still-valid value; a failed refresh logs a warning and keeps it.
- Mandatory window (or nothing cached): every caller waits for the one refresh in flight;
  a failure is raised to all of them. An expired value is never returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from proxy.errors import CredentialError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]

# Margins before expiry, as (fraction of the lifetime, cap in seconds). An LWA token
# (3600 s) is refreshed from 5 min before expiry and never used in its last minute, like
# the official clients; a 3 s test token from 0.75 s and 0.3 s before.
ADVISORY_FRACTION, ADVISORY_CAP_S = 0.25, 300.0
MANDATORY_FRACTION, MANDATORY_CAP_S = 0.10, 60.0
# After a failed background refresh, wait this long before the next attempt so an
# outage doesn't turn every request into a refresh attempt.
ADVISORY_RETRY_S = 5.0


@dataclass(frozen=True)
class Expiring(Generic[T]):
    """A fetched value and the wall-clock time (epoch seconds) it stops being valid."""

    value: T
    expires_at: float


class Refreshable(Generic[T]):
    def __init__(
        self,
        name: str,
        fetch: Callable[[], Awaitable[Expiring[T]]],
        clock: Clock = time.time,
        on_refresh: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._clock = clock
        self._on_refresh = on_refresh
        self._current: Expiring[T] | None = None
        self._fetched_at = 0.0
        self._advisory_at = self._mandatory_at = 0.0  # when the windows open for `_current`
        self._refresh: asyncio.Task[Expiring[T]] | None = None
        self._next_advisory_try = 0.0

    async def get(self) -> T:
        now = self._clock()
        current = self._current
        if current is not None:
            if now < self._advisory_at:
                return current.value
            if now < self._mandatory_at:
                self._start_background_refresh(now)
                return current.value
        return (await self._shared_refresh()).value

    def serves_cached(self, now: float) -> bool:
        """Whether get() at `now` answers from the value it holds, without waiting for a fetch
        (a background refresh may still start)."""
        return self._current is not None and now < self._mandatory_at

    def invalidate(self, value: T) -> None:
        """Forget `value` (e.g. SP-API said the token expired) unless a newer one replaced it."""
        if self._current is not None and self._current.value == value:
            self._current = None

    @property
    def cached(self) -> Expiring[T] | None:
        return self._current

    def _windows(self, current: Expiring[T]) -> tuple[float, float]:
        lifetime = max(current.expires_at - self._fetched_at, 0.0)
        advisory = min(lifetime * ADVISORY_FRACTION, ADVISORY_CAP_S)
        mandatory = min(lifetime * MANDATORY_FRACTION, MANDATORY_CAP_S)
        return current.expires_at - advisory, current.expires_at - mandatory

    def _start_background_refresh(self, now: float) -> None:
        if self._refresh is not None or now < self._next_advisory_try:
            return
        task = self._ensure_refresh()
        task.add_done_callback(self._log_background_failure)

    def _log_background_failure(self, task: asyncio.Task[Expiring[T]]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._next_advisory_try = self._clock() + ADVISORY_RETRY_S
        error = task.exception()
        reason = error.message if isinstance(error, CredentialError) else type(error).__name__
        logger.warning("%s refresh failed, still using the current one: %s", self.name, reason)

    async def _shared_refresh(self) -> Expiring[T]:
        # shield: a caller that gives up (client gone) must not cancel the refresh
        # the other waiters depend on.
        return await asyncio.shield(self._ensure_refresh())

    def _ensure_refresh(self) -> asyncio.Task[Expiring[T]]:
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._run_refresh())
        return self._refresh

    async def _run_refresh(self) -> Expiring[T]:
        started = self._clock()
        try:
            fresh = await self._fetch()
        except BaseException:
            self._report(ok=False)
            raise
        finally:
            self._refresh = None
        self._current, self._fetched_at = fresh, started
        self._advisory_at, self._mandatory_at = self._windows(fresh)
        self._report(ok=True)
        logger.info("%s refreshed, valid for %.0f s", self.name, fresh.expires_at - started)
        return fresh

    def _report(self, ok: bool) -> None:
        if self._on_refresh is not None:
            self._on_refresh(self.name, ok)
