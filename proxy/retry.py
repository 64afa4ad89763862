"""Bounded retries with exponential backoff and full jitter for credential fetches."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 3
BASE_DELAY_S = 0.5  # sleeps of up to 0.5 s then 1 s: three tries fit well inside 10 s


class Retryable(Exception):
    """Raised by an attempt that may succeed if tried again (network error, 5xx)."""

    def __init__(self, final: Exception) -> None:
        super().__init__(str(final))
        self.final = final  # what to raise when the attempts run out


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    attempts: int = ATTEMPTS,
    base_delay_s: float = BASE_DELAY_S,
) -> T:
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except Retryable as retryable:
            if number == attempts:
                raise retryable.final from None
            delay = random.uniform(0, base_delay_s * 2 ** (number - 1))
            logger.warning(
                "%s failed (attempt %d of %d), retrying in %.2f s", what, number, attempts, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
