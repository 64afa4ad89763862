"""Bounded retries with exponential backoff and full jitter for credential fetches.

One deadline covers every attempt and every sleep between them: `lwa.timeout_s` is what a
client waits at most for a token, however the tries go.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 3
BASE_DELAY_S = 0.5  # sleeps of up to 0.5 s then 1 s between quick failures (5xx, resets)


class Retryable(Exception):
    """Raised by an attempt that may succeed if tried again (network error, 5xx)."""

    def __init__(self, final: Exception) -> None:
        super().__init__(str(final))
        self.final = final  # what to raise when the attempts or the time run out


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    deadline_s: float,
    timed_out: Callable[[], Exception],
    attempts: int = ATTEMPTS,
    base_delay_s: float = BASE_DELAY_S,
) -> T:
    """`attempt`'s result, trying again after a `Retryable`; `timed_out()` is raised when
    `deadline_s` passes first, and the last failure when a backoff sleep would overrun it."""
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + deadline_s
    try:
        async with asyncio.timeout_at(ends_at) as scope:
            for number in range(1, attempts + 1):
                try:
                    return await attempt()
                except Retryable as retryable:
                    delay = random.uniform(0, base_delay_s * 2 ** (number - 1))
                    if number == attempts or loop.time() + delay >= ends_at:
                        raise retryable.final from None
                    logger.warning(
                        "%s failed (attempt %d of %d), retrying in %.2f s",
                        what,
                        number,
                        attempts,
                        delay,
                    )
                    await asyncio.sleep(delay)
    except TimeoutError:
        if scope.expired():
            raise timed_out() from None
        raise
    raise AssertionError("unreachable")  # pragma: no cover
