"""Token buckets and the rate limiter, on a clock moved by hand; 429 backoff delays."""

from __future__ import annotations

import random

import pytest

from proxy.config.settings import ListenSettings, LwaSettings, Settings, UpstreamSettings
from proxy.errors import QuotaExceeded
from proxy.forwarding.operations import Operation, OperationIndex
from proxy.forwarding.ratelimit import SLOWEST_REFILL_S, RateLimiter, TokenBucket, backoff_delay
from proxy.profiles import rate_limiter
from proxy.secret import Secret
from tests.support.clock import FakeClock

INDEX = OperationIndex()


def orders_op(path: str) -> Operation:
    op = INDEX.match("GET", path)
    assert op is not None
    return op


GET_ORDERS = orders_op("/orders/v0/orders")  # 0.0167/s, burst 20
GET_ORDER = orders_op("/orders/v0/orders/1")  # 0.5/s, burst 30


def no_plan(name: str = "noPlan") -> Operation:
    return Operation("t", name, "GET", "/t", None, None, False, False, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0)


# --- TokenBucket ------------------------------------------------------------------------


def test_bucket_starts_full_then_refills_at_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(2.0, 3, clock)
    assert [bucket.reserve(0.0) for _ in range(4)] == [0.0, 0.0, 0.0, None]
    clock.advance(0.5)  # one token at 2/s
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) is None
    clock.advance(100.0)  # refill stops at the burst
    assert [bucket.reserve(0.0) for _ in range(4)] == [0.0, 0.0, 0.0, None]


def test_reservations_queue_with_increasing_waits(clock: FakeClock) -> None:
    bucket = TokenBucket(2.0, 1, clock)
    waits = [bucket.reserve(10.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5])
    clock.advance(1.0)  # two of the queued tokens have now been paid for
    assert bucket.reserve(10.0) == pytest.approx(1.0)


def test_wait_beyond_max_reserves_nothing(clock: FakeClock) -> None:
    bucket = TokenBucket(1.0, 1, clock)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.5) is None  # would need 1 s
    assert bucket.reserve(0.5) is None  # and the refusal took nothing
    assert bucket.retry_after() == pytest.approx(1.0)
    assert bucket.reserve(1.0) == pytest.approx(1.0)


def test_retry_after(clock: FakeClock) -> None:
    bucket = TokenBucket(0.5, 2, clock)
    assert bucket.retry_after() == 0.0
    bucket.reserve(0.0)
    bucket.reserve(0.0)
    assert bucket.retry_after() == pytest.approx(2.0)
    clock.advance(1.5)
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.retry_after() == 0.0


@pytest.mark.parametrize(("start", "rate"), [(1000.0, 0.3), (1000.0, 3.0), (1.754e9 + 0.123, 0.1)])
def test_refill_in_steps_gives_a_whole_token(start: float, rate: float) -> None:
    # float sums land a hair under 1.0 token: that must read as "go now", not a tiny wait
    clock = FakeClock(start)
    bucket = TokenBucket(rate, 1, clock)
    bucket.reserve(0.0)
    for _ in range(3):
        clock.advance(1 / (3 * rate))
    assert bucket.retry_after() == 0.0
    assert bucket.reserve(0.0) == 0.0


def test_adjust_rate_keeps_tokens_and_changes_refill(clock: FakeClock) -> None:
    bucket = TokenBucket(1.0, 10, clock)
    for _ in range(10):
        bucket.reserve(0.0)
    clock.advance(2.0)  # 2 tokens earned at the old rate
    bucket.adjust_rate(0.25)
    assert bucket.rate_per_s == 0.25
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, None]
    assert bucket.retry_after() == pytest.approx(4.0)


def test_clock_stepping_back_does_not_drain(clock: FakeClock) -> None:
    bucket = TokenBucket(1.0, 2, clock)
    clock.advance(-50.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, None]


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 5), (-1.0, 5), (1.0, 0), (float("nan"), 1)])
def test_bucket_rejects_unusable_plans(clock: FakeClock, rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="need rate"):
        TokenBucket(rate, burst, clock)


# --- RateLimiter ------------------------------------------------------------------------


def test_forty_get_orders_against_burst_20(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    waits = [limiter.reserve(("p", "getOrders"), GET_ORDERS, 1.0) for _ in range(40)]
    assert waits.count(0.0) == 20
    assert waits.count(None) == 20
    assert waits[:20] == [0.0] * 20
    assert limiter.retry_after(("p", "getOrders")) == pytest.approx(1 / 0.0167)


def test_keys_have_their_own_buckets(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    for _ in range(20):
        limiter.reserve(("seller-a", "getOrders"), GET_ORDERS, 0.0)
    assert limiter.reserve(("seller-a", "getOrders"), GET_ORDERS, 0.0) is None
    assert limiter.reserve(("seller-b", "getOrders"), GET_ORDERS, 0.0) == 0.0
    assert limiter.reserve(("seller-a", "getOrder"), GET_ORDER, 0.0) == 0.0


def test_share_halves_rate_and_burst(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, share=0.5)
    waits = [limiter.reserve("k", GET_ORDER, 0.0) for _ in range(16)]
    assert waits.count(0.0) == 15  # burst 30 / 2
    assert limiter.retry_after("k") == pytest.approx(1 / 0.25)  # rate 0.5 / 2


def test_tiny_share_still_allows_one_request(clock: FakeClock) -> None:
    op = Operation("t", "slow", "GET", "/t", 0.1, 1, False, False, None)
    limiter = RateLimiter(clock, share=0.25)
    assert limiter.reserve("k", op, 0.0) == 0.0
    assert limiter.retry_after("k") == pytest.approx(1 / 0.025)


def test_defaults_apply_only_without_a_plan(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, default_rate=1.0, default_burst=2)
    assert [limiter.reserve("unknown", None, 0.0) for _ in range(3)] == [0.0, 0.0, None]
    assert [limiter.reserve("noplan", no_plan(), 0.0) for _ in range(3)] == [0.0, 0.0, None]
    assert limiter.reserve("orders", GET_ORDERS, 0.0) == 0.0
    assert limiter.retry_after("orders") == 0.0  # burst 20, not the default 2


def test_without_plan_or_default_nothing_is_limited(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    assert all(limiter.reserve("k", None, 0.0) == 0.0 for _ in range(1000))
    assert len(limiter) == 0
    assert limiter.retry_after("k") == 0.0


def test_sandbox_is_flat_5_per_second_burst_15(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, sandbox=True)
    for key, op in [("orders", GET_ORDERS), ("unknown", None)]:
        waits = [limiter.reserve(key, op, 0.0) for _ in range(16)]
        assert waits.count(0.0) == 15
        assert limiter.retry_after(key) == pytest.approx(0.2)


def test_observe_limit_adjusts_the_rate(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, share=0.5)
    for _ in range(15):
        limiter.reserve("k", GET_ORDER, 0.0)
    limiter.observe_limit("k", " 2.0 ")  # the application's rate; this worker gets half
    assert limiter.retry_after("k") == pytest.approx(1.0)


@pytest.mark.parametrize("junk", ["", "fast", "0", "-1", "nan", "inf", "1,2"])
def test_observe_limit_ignores_junk(clock: FakeClock, junk: str) -> None:
    limiter = RateLimiter(clock)
    for _ in range(30):
        limiter.reserve("k", GET_ORDER, 0.0)
    limiter.observe_limit("k", junk)
    limiter.observe_limit("no-bucket", "1.0")
    assert limiter.retry_after("k") == pytest.approx(2.0)
    assert len(limiter) == 1


@pytest.mark.parametrize("value", ["5e-324", "1e-9", "0.00009", "10001", "1e300", "fast"])
def test_observe_limit_ignores_values_outside_a_sane_range_and_says_so_once(
    clock: FakeClock, value: str
) -> None:
    limiter = RateLimiter(clock)
    for _ in range(30):
        limiter.reserve("k", GET_ORDER, 0.0)
    assert limiter.observe_limit("k", value) is True  # the caller warns
    assert limiter.observe_limit("k", value) is False  # the same value again: no second warning
    assert limiter.observe_limit("k", "-3") is False  # another bad one: still said once
    assert limiter.retry_after("k") == pytest.approx(2.0)  # getOrder's 0.5/s, unchanged
    assert limiter.observe_limit("k", "1.0") is False  # a good value still applies
    assert limiter.retry_after("k") == pytest.approx(1.0)


@pytest.mark.parametrize(("value", "rate"), [("0.0001", 1 / SLOWEST_REFILL_S), ("10000", 1e4)])
def test_observe_limit_takes_the_range_edges(clock: FakeClock, value: str, rate: float) -> None:
    limiter = RateLimiter(clock)
    limiter.reserve("k", GET_ORDER, 0.0)
    assert limiter.observe_limit("k", value) is False
    for _ in range(29):
        limiter.reserve("k", GET_ORDER, 0.0)
    assert limiter.retry_after("k") == pytest.approx(1 / rate)


@pytest.mark.parametrize("rate", [1e-300, 1e-9, 1e-4])
def test_a_bucket_refills_at_least_a_token_an_hour(clock: FakeClock, rate: float) -> None:
    bucket = TokenBucket(rate, 1, clock)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.retry_after() == pytest.approx(SLOWEST_REFILL_S)
    clock.advance(SLOWEST_REFILL_S)
    assert bucket.reserve(0.0) == 0.0
    bucket.adjust_rate(1e-300)
    assert bucket.retry_after() == pytest.approx(SLOWEST_REFILL_S)


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (0.0, "1"),
        (0.2, "1"),
        (59.5, "60"),
        (61.0, "60"),
        (1e9, "60"),
        (float("inf"), "60"),
        (float("nan"), "60"),
    ],
)
def test_a_local_429s_retry_after_is_between_one_second_and_a_minute(
    seconds: float, header: str
) -> None:
    assert QuotaExceeded("over", "wait", seconds).headers["Retry-After"] == header


def test_bucket_count_is_bounded(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, max_buckets=100)
    for n in range(1000):
        limiter.reserve(("p", n), GET_ORDERS, 0.0)
    assert len(limiter) == 100


def test_limiter_rejects_bad_share(clock: FakeClock) -> None:
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match="share"):
            RateLimiter(clock, share=share)


# --- backoff ----------------------------------------------------------------------------


def delays(count: int, seed: int, base_s: float = 1.0, cap_s: float = 30.0) -> list[float]:
    rng = random.Random(seed)
    return [backoff_delay(n, base_s, cap_s, rng) for n in range(count)]


def test_backoff_doubles_with_up_to_25_percent_jitter() -> None:
    spaced = delays(5, seed=7)
    for n, delay in enumerate(spaced):
        assert 2**n <= delay <= 2**n * 1.25
    assert spaced == delays(5, seed=7)
    assert spaced != delays(5, seed=8)


def test_backoff_is_capped() -> None:
    spaced = delays(8, seed=1, base_s=0.5, cap_s=4.0)
    assert spaced[:3] == pytest.approx([0.5, 1.0, 2.0], rel=0.25)
    assert spaced[-3:] == [4.0, 4.0, 4.0]


def test_workers_split_every_bucket_so_together_they_never_overshoot() -> None:
    """listen.workers: 2 -> each worker's getOrders bucket holds 10 of Amazon's 20."""
    settings = Settings(
        listen=ListenSettings(workers=2),
        upstream=UpstreamSettings(sandbox=False),
        lwa=LwaSettings("id", Secret("secret"), Secret("refresh")),
    )
    clock = FakeClock(1_000_000.0)
    limiter = rate_limiter(settings.default_profile, settings, clock)
    assert limiter is not None
    get_orders = OperationIndex().match("GET", "/orders/v0/orders")
    waits = [limiter.reserve(("ordersV0", "getOrders"), get_orders, 1.0) for _ in range(40)]
    assert waits.count(0.0) == 10
    assert waits.count(None) == 30
