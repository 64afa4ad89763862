"""The event loop the proxy serves on: asyncio's, with an optional brief spin before sleeping.

Each request through the proxy crosses four idle gaps at low concurrency (client to proxy, proxy
to SP-API, back, and back again). On the virtual machines sidecars run on, a core that goes idle
and is woken again costs tens of microseconds and comes back with cold caches; at one connection
that is about a third of the latency the proxy adds. Go's runtime, which the reference
signing proxy is written in, spins idle threads briefly before parking them for the same reason.

With `listen.busy_poll_us` > 0 the selector polls without blocking for up to that long before it
blocks. The cost is bounded: at most that much CPU each time the proxy falls idle, nothing while
events are waiting (under load) and nothing once it sleeps.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class SpinningSelector(selectors.DefaultSelector):
    """The platform's default selector, polling for `spin_s` before a blocking select."""

    def __init__(self, spin_s: float) -> None:
        super().__init__()
        self._spin_s = spin_s

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        clock = time.perf_counter
        started = clock()
        budget = self._spin_s if timeout is None else min(self._spin_s, timeout)
        while clock() - started < budget:
            ready = super().select(0)
            if ready:
                return ready
        remaining = None if timeout is None else max(0.0, timeout - (clock() - started))
        result: list[tuple[selectors.SelectorKey, int]] = super().select(remaining)
        return result


def new_event_loop(busy_poll_us: int) -> asyncio.AbstractEventLoop:
    """A new event loop; spinning up to `busy_poll_us` microseconds before sleeping if > 0."""
    if busy_poll_us <= 0:
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(SpinningSelector(busy_poll_us / 1_000_000))


def run(main: Coroutine[Any, Any, T], busy_poll_us: int) -> T:
    """asyncio.run(main) on `new_event_loop(busy_poll_us)`."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(busy_poll_us)) as runner:
        return runner.run(main)
