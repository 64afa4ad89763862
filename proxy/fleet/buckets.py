"""Token buckets in Redis: every replica takes its tokens from the same bucket.

One Lua script does everything, atomically, in one round trip: refill, take a token (or say how
long to wait), learn a rate, or stop the bucket after an Amazon 429. It reads Redis's clock, not
the replicas', so skewed machines can't mint tokens.

A token bucket rather than GCRA: it is Amazon's own model and the proxy's local one (a level
refilled at ``rate`` up to ``burst``), so a bucket behaves the same shared or not; a rate learned
from ``x-amzn-RateLimit-Limit`` changes the refill and keeps the level, where GCRA's single
timestamp would have to be rescaled; and the 429 "not before" is one more field. GCRA would save
one field of a small hash (a few bytes per key).

As locally, a reservation may take the level below zero: the debt is the queue of callers
waiting for their token, so N replicas' callers together are served in order at ``rate``, and
at most ``burst + rate x elapsed`` requests leave for Amazon whatever N is.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, NamedTuple

from cachetools import TTLCache
from redis.exceptions import NoScriptError

from proxy.fleet.store import REDIS_ERRORS, SharedState, SharedStateDown
from proxy.forwarding.ratelimit import Reservation

# KEYS[1]: the bucket, a hash: tokens, ts (Redis time of `tokens`), learned (a rate from
# Amazon's header, else absent: the plan's), nb (not before: nothing leaves until then).
# ARGV: mode, plan rate, burst, argument (take: the longest acceptable wait; rate: the learned
# rate; throttled: seconds nothing may leave). Replies {1, wait µs} or {0, retry-after µs}.
BUCKET_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'learned', 'nb')
local mode, burst, argument = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local rate = tonumber(state[3]) or tonumber(ARGV[2])
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
local not_before = tonumber(state[4]) or 0
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
local wait = 0
if mode == 'take' then
  wait = math.max((1 - tokens) / rate, not_before - now, 0)
  if wait > argument then return {0, math.ceil(wait * 1000000)} end
  tokens = tokens - 1
elseif mode == 'rate' then
  rate = argument
  redis.call('HSET', KEYS[1], 'learned', rate)
elseif mode == 'throttled' then
  tokens = math.min(tokens, 0)
  not_before = math.max(not_before, now + argument)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now, 'nb', not_before)
-- Kept while it differs from a full bucket, and an hour more for the learned rate.
local busy = (burst - tokens) / rate + math.max(0, not_before - now)
redis.call('PEXPIRE', KEYS[1], math.ceil((busy + 3600) * 1000))
return {1, math.ceil(wait * 1000000)}
"""

TAKE, RATE, THROTTLED = "take", "rate", "throttled"
NOW = Reservation(True, 0.0)
# Waits this short are the float sums' rounding, not throttling (as in proxy.forwarding.ratelimit).
_ROUNDING_S = 2e-6
# Each process tells Redis a learned rate once per value and then again after this long, so a
# rate lost with a flushed or expired key comes back without a restart.
RESEND_LEARNED_S = 600.0


class SharedBuckets:
    """The fleet's buckets. Every method raises :class:`SharedStateDown` when Redis can't answer.

    Calls made in the same turn of the event loop go to Redis together, pipelined: under load
    many requests share one round trip (and the client's per-command cost, which dominates),
    while a lone request goes at once on its own.
    """

    def __init__(self, state: SharedState, max_keys: int = 10_000) -> None:
        self._state = state
        self._script = state.client.register_script(BUCKET_SCRIPT)
        # The last learned rate each bucket was told, so an answer repeating it costs nothing.
        self._told: TTLCache[str, float] = TTLCache(maxsize=max_keys, ttl=RESEND_LEARNED_S)
        self._pending: list[_Call] = []
        self._flushes: set[asyncio.Task[None]] = set()  # referenced until done

    async def reserve(
        self, key: str, rate_per_s: float, burst: float, max_wait_s: float
    ) -> Reservation:
        """A token and how long to wait for it, or (refused, nothing taken) how long until
        one is free."""
        taken, micros = await self._run(key, TAKE, rate_per_s, burst, max_wait_s)
        seconds = micros / 1e6
        if taken and seconds <= _ROUNDING_S:
            return NOW
        return Reservation(bool(taken), seconds)

    async def learn_rate(self, key: str, rate_per_s: float, burst: float) -> None:
        """A rate Amazon announced, for every replica (sent once per value and process)."""
        if self._told.get(key) == rate_per_s:
            return
        await self._run(key, RATE, rate_per_s, burst, rate_per_s)
        self._told[key] = rate_per_s

    async def throttled(self, key: str, rate_per_s: float, burst: float, delay_s: float) -> None:
        """Amazon answered 429: the bucket is empty there, and nothing leaves for ``delay_s``."""
        await self._run(key, THROTTLED, rate_per_s, burst, delay_s)

    async def _run(
        self, key: str, mode: str, rate_per_s: float, burst: float, argument: float
    ) -> tuple[int, int]:
        if not self._state.usable():
            raise SharedStateDown("recently failed")
        if not math.isfinite(argument):
            argument = 1e9  # Lua's tonumber reads "inf" as nil
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._pending.append(_Call(key, (mode, rate_per_s, burst, argument), reply))
        if len(self._pending) == 1:
            # Runs after this turn of the loop: every call made meanwhile joins the batch.
            flush = loop.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await reply

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        state = self._state
        try:
            if len(batch) == 1:
                # EVALSHA; after a Redis restart or SCRIPT FLUSH the client loads the script.
                call = batch[0]
                replies: list[Any] = [await self._script(keys=[call.key], args=call.args)]
            else:
                replies = await self._pipelined(batch)
        except REDIS_ERRORS as error:
            down = state.failed(error)
            for call in batch:
                if not call.reply.done():  # a caller that gave up has cancelled its reply
                    call.reply.set_exception(down)
            return
        state.succeeded()
        for call, reply in zip(batch, replies, strict=True):
            if call.reply.done():
                continue
            if isinstance(reply, BaseException):  # this script failed; the others did not
                call.reply.set_exception(state.failed(reply))
            else:
                call.reply.set_result((int(reply[0]), int(reply[1])))

    async def _pipelined(self, batch: list[_Call]) -> list[Any]:
        """One round trip for the batch; the calls Redis answered NOSCRIPT are sent again
        once the script is loaded (the others ran, and must not take a second token)."""
        replies: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        for attempt in range(2):
            pipe = self._state.client.pipeline(transaction=False)
            for index in todo:
                call = batch[index]
                pipe.evalsha(self._script.sha, 1, call.key, *call.args)
            answers = await pipe.execute(raise_on_error=False)
            for index, answer in zip(todo, answers, strict=True):
                replies[index] = answer
            todo = [i for i, answer in zip(todo, answers, strict=True) if _no_script(answer)]
            if not todo or attempt:
                break
            self._script.sha = await self._state.client.script_load(BUCKET_SCRIPT)
        return replies


class _Call(NamedTuple):
    key: str
    args: tuple[str, float, float, float]
    reply: asyncio.Future[tuple[int, int]]


def _no_script(answer: object) -> bool:
    return isinstance(answer, NoScriptError)
