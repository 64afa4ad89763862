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
import hashlib
import math
from typing import Any, NamedTuple

from cachetools import TTLCache
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

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

    The calls go over one connection of their own, pipelined: a call made while a batch is on
    its way waits for the next batch, which leaves as soon as the previous one is answered. A
    lone request goes at once; under load many share one round trip and one write, and the
    client's per-command layers (pool, retries, a timeout task per read) are skipped, as they
    cost more per call than Redis does. Instead one watchdog, armed while calls come, cuts a
    batch that has waited longer than ``timeout_s``.
    """

    def __init__(self, state: SharedState, max_keys: int = 10_000) -> None:
        self._state = state
        self._timeout_s = state.timeout_s
        self._sha = hashlib.sha1(BUCKET_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis's name
        # The last learned rate each bucket was told, so an answer repeating it costs nothing.
        self._told: TTLCache[str, float] = TTLCache(maxsize=max_keys, ttl=RESEND_LEARNED_S)
        self._pending: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None  # sends batches while calls are pending
        self._connection: AbstractConnection | None = None
        self._batch_since: float | None = None  # loop time the batch in flight was sent
        self._watchdog: asyncio.TimerHandle | None = None
        self._busy = False  # a batch was sent since the watchdog's last look
        self._cut = False  # the watchdog cancelled the sender: a timeout, not a shutdown

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

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._sender is not None:
            self._sender.cancel()
        await self._drop_connection()

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
        if self._sender is None:
            # Starts after this turn of the loop: every call made meanwhile joins its batch.
            self._sender = loop.create_task(self._send_pending())
            if self._watchdog is None:
                self._watchdog = loop.call_later(self._timeout_s / 4, self._watch)
        return await reply

    async def _send_pending(self) -> None:
        batch: list[_Call] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send_batch(batch)
        except asyncio.CancelledError:
            if not self._cut:
                raise  # closing
            # The watchdog's verdict: Redis did not answer within timeout_s. The calls queued
            # behind the batch would wait as long again: they fail with it.
            self._cut = False
            await self._drop_connection()
            self._fail([*batch, *self._pending], TimeoutError())
            self._pending = []
        finally:
            self._sender = None
            self._batch_since = None

    def _watch(self) -> None:
        """Every timeout_s / 4 while calls come: cut a batch older than timeout_s."""
        loop = asyncio.get_running_loop()
        since, sender = self._batch_since, self._sender
        if since is not None and sender is not None and loop.time() - since > self._timeout_s:
            self._cut = True
            sender.cancel()
        if self._busy or sender is not None:
            self._busy = False
            self._watchdog = loop.call_later(self._timeout_s / 4, self._watch)
        else:
            self._watchdog = None  # idle: the next call arms it again

    async def _send_batch(self, batch: list[_Call]) -> None:
        state = self._state
        self._busy = True
        self._batch_since = asyncio.get_running_loop().time()
        try:
            replies = await self._exchange_with_retry(batch)
        except REDIS_ERRORS as error:
            await self._drop_connection()
            self._fail(batch, error)
            return
        finally:
            self._batch_since = None
        state.succeeded()
        for call, reply in zip(batch, replies, strict=True):
            if call.reply.done():
                continue
            if isinstance(reply, BaseException):  # this script failed; the others did not
                call.reply.set_exception(state.failed(reply))
            else:
                call.reply.set_result((int(reply[0]), int(reply[1])))

    def _fail(self, calls: list[_Call], error: BaseException) -> None:
        down = self._state.failed(error)
        for call in calls:
            if not call.reply.done():  # a caller that gave up has cancelled its reply
                call.reply.set_exception(down)

    async def _exchange_with_retry(self, batch: list[_Call]) -> list[Any]:
        """The batch's replies; once more on a new connection if the old one was closed (Redis
        restarted). A batch that ran but whose replies were lost runs twice: that spends tokens
        twice, never sends more."""
        try:
            return await self._exchange_loading_script(batch)
        except ConnectionError:
            await self._drop_connection()
            return await self._exchange_loading_script(batch)

    async def _exchange_loading_script(self, batch: list[_Call]) -> list[Any]:
        """The calls Redis answered NOSCRIPT (after a restart or SCRIPT FLUSH) are sent again
        once the script is loaded; the others ran, and must not take a second token."""
        replies = await self._exchange(batch)
        missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await self._state.client.script_load(BUCKET_SCRIPT)
            again = await self._exchange([batch[index] for index in missing])
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        return replies

    async def _exchange(self, calls: list[_Call]) -> list[Any]:
        """One write of every call, then their replies in order (each read bounded by the
        connection's socket timeout)."""
        connection = self._connection
        if connection is None:
            # A connection like the pool's (same address, password, TLS and connect timeout)
            # but with no read timeout of its own: the watchdog bounds the batch instead.
            pool = self._state.client.connection_pool
            options = {**pool.connection_kwargs, "socket_timeout": None}
            # Connected (and authenticated) by its first send.
            connection = self._connection = pool.connection_class(**options)
        commands = [("EVALSHA", self._sha, 1, call.key, *call.args) for call in calls]
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in calls:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:  # one script's error; the others' replies follow
                replies.append(error)
        return replies

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()


class _Call(NamedTuple):
    key: str
    args: tuple[str, float, float, float]
    reply: asyncio.Future[tuple[int, int]]
