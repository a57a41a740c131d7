from __future__ import annotations

import gc
import math
import tracemalloc
from fractions import Fraction

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from botperf import BotperfError, InvalidOptionError, RateLimitedError, RateLimiter
from botperf import RateLimiterStats as Stats


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limited(limiter: RateLimiter, key: object, cost: float = 1) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as info:
        limiter.check(key, cost)
    return info.value


def test_fresh_key_is_admitted_burst_times_then_once_per_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=5, per=60.0, clock=clock)
    for _ in range(5):
        limiter.check("ada")
    assert limited(limiter, "ada").retry_after == pytest.approx(12.0)
    for _ in range(3):
        clock.advance(12.0)
        limiter.check("ada")
        assert limited(limiter, "ada").retry_after == pytest.approx(12.0)


def test_burst_defaults_to_rate_and_can_be_set() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2, per=1.0, burst=4, clock=clock)
    for _ in range(4):
        limiter.check("ada")
    assert limited(limiter, "ada").retry_after == pytest.approx(0.5)
    small_rate = RateLimiter(rate=0.5, per=1.0, clock=clock)  # one per 2 s, burst at least 1
    small_rate.check("ada")
    assert limited(small_rate, "ada").retry_after == pytest.approx(2.0)


def test_retry_after_is_exact_and_a_check_then_succeeds() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2, per=10.0, clock=clock)
    limiter.check("ada")
    limiter.check("ada")
    clock.advance(1.5)
    assert limiter.retry_after("ada") == pytest.approx(3.5)
    clock.advance(limiter.retry_after("ada"))
    assert limiter.retry_after("ada") == 0.0
    limiter.check("ada")


@pytest.mark.parametrize(
    ("rate", "per", "start"),
    [
        (3, 1.0, 0.0),
        (7, 0.1, 0.1),
        (3, 1.0, 1e6 + 0.1),
        (10, 1.0, 12345.678),
        (1000, 1.0, 3e7 + 0.3),
        (6, 0.7, 1 / 3),
    ],
)
def test_no_unit_of_a_burst_is_lost_to_rounding(rate: int, per: float, start: float) -> None:
    clock = FakeClock(start)
    limiter = RateLimiter(rate=rate, per=per, clock=clock)
    for _ in range(rate):
        limiter.check("ada")
    for _ in range(50):
        wait = limited(limiter, "ada").retry_after
        assert wait is not None
        # Within the resolution of the clock's readings at its magnitude.
        assert wait == pytest.approx(per / rate, rel=1e-6, abs=8 * math.ulp(start))
        assert limiter.retry_after("ada") == wait
        clock.advance(wait)
        limiter.check("ada")
    # After a full period of idling the whole burst is back.
    clock.advance(per)
    for _ in range(rate):
        limiter.check("ada")
    limited(limiter, "ada")


def test_refused_error_carries_the_retry_after_of_that_moment() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=5.0, clock=clock)
    limiter.check(42)
    clock.advance(1.25)
    expected = limiter.retry_after(42)
    error = limited(limiter, 42)
    assert error.retry_after == expected == pytest.approx(3.75)
    assert error.key == 42
    assert isinstance(error, BotperfError)
    assert "retry in 3.75 s" in str(error)


def test_a_refused_check_consumes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=1.0, clock=clock)
    limiter.check("ada")
    before = limiter.retry_after("ada")
    for _ in range(10):
        limited(limiter, "ada")
    assert limiter.retry_after("ada") == before
    clock.advance(1.0)
    limiter.check("ada")


def test_cost_consumes_that_many_units() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=5, per=5.0, clock=clock)
    limiter.check("ada", cost=3)
    limiter.check("ada", cost=2)
    assert limited(limiter, "ada").retry_after == pytest.approx(1.0)
    assert limiter.retry_after("ada", cost=4) == pytest.approx(4.0)
    clock.advance(2.5)
    limiter.check("ada", cost=2.5)
    assert limiter.retry_after("ada", cost=0.5) == pytest.approx(0.5)


def test_refused_expensive_request_leaves_room_for_a_cheap_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=4, per=4.0, clock=clock)
    limiter.check("ada", cost=3)
    limited(limiter, "ada", cost=2)
    limiter.check("ada", cost=1)


@pytest.mark.parametrize("method", ["check", "retry_after"])
def test_cost_above_burst_is_a_value_error_at_once(method: str) -> None:
    limiter = RateLimiter(rate=5, per=60.0)
    with pytest.raises(ValueError, match=r"at most burst=5.*could never be admitted"):
        getattr(limiter, method)("ada", 6)
    assert limiter.stats == Stats(admitted=0, limited=0, keys=0)


@pytest.mark.parametrize(
    ("cost", "error"),
    [(0, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
     ("1", TypeError), (None, TypeError), (False, TypeError)],
)  # fmt: skip
def test_bad_cost_is_refused(cost: object, error: type[Exception]) -> None:
    limiter = RateLimiter(rate=5, per=60.0)
    with pytest.raises(error, match="cost"):
        limiter.check("ada", cost)  # type: ignore[arg-type]
    with pytest.raises(error, match="cost"):
        limiter.retry_after("ada", cost)  # type: ignore[arg-type]


def test_keys_are_independent() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=10.0, clock=clock)
    limiter.check("ada")
    limited(limiter, "ada")
    limiter.check("bob")
    limiter.check(("guild", 1))
    assert limiter.retry_after("carol") == 0.0
    assert limiter.stats.keys == 3


@pytest.mark.parametrize("method", ["check", "retry_after"])
def test_unhashable_key_is_a_type_error(method: str) -> None:
    limiter = RateLimiter(rate=1, per=1.0)
    with pytest.raises(TypeError, match=r"key \['ada'\] is not hashable \(list\)"):
        getattr(limiter, method)(["ada"])


def test_stats_count_every_check_exactly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2, per=1.0, clock=clock)
    outcomes = {"admitted": 0, "limited": 0}
    for step in range(40):
        clock.advance(0.1 * (step % 4))
        try:
            limiter.check(step % 3)
        except RateLimitedError:
            outcomes["limited"] += 1
        else:
            outcomes["admitted"] += 1
        limiter.retry_after(step % 3)  # counts nothing
    assert limiter.stats == Stats(outcomes["admitted"], outcomes["limited"], keys=3)
    assert outcomes["limited"] > 0


def test_keys_beyond_max_keys_are_dropped_least_recently_used_first() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=100.0, max_keys=4, clock=clock)
    for key in range(6):
        limiter.check(key)
        assert limiter.stats.keys <= 4
    held = [key for key in range(6) if limiter.retry_after(key) > 0]
    assert held == sorted(held)
    assert held[-1] == 5  # the newest key is always kept
    dropped = [key for key in range(6) if key not in held]
    assert dropped == list(range(len(dropped)))  # the oldest went first


def test_a_recently_used_key_outlives_older_ones() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=100.0, max_keys=4, clock=clock)
    limiter.check("abuser")
    for key in range(20):
        limiter.check(key)
        limited(limiter, "abuser")  # refused, but still used: kept
    assert limiter.retry_after("abuser") > 0
    assert limiter.stats.keys <= 4


def test_a_dropped_key_comes_back_fresh() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=100.0, max_keys=1, clock=clock)
    limiter.check("ada")
    limiter.check("bob")  # drops ada
    assert limiter.stats.keys == 1
    assert limiter.retry_after("ada") == 0.0
    limiter.check("ada")


@settings(max_examples=60)
@given(
    max_keys=st.integers(1, 12),
    keys=st.lists(st.integers(0, 30), max_size=120),
)
def test_bounded_keys_follow_least_recently_used_order(max_keys: int, keys: list[int]) -> None:
    clock = FakeClock()  # never advances: a used key stays visibly used while held
    limiter = RateLimiter(rate=1, per=1000.0, max_keys=max_keys, clock=clock)
    last_use: dict[int, int] = {}
    for step, key in enumerate(keys):
        try:
            limiter.check(key)
        except RateLimitedError:
            assert key in last_use
        last_use[key] = step
        assert limiter.stats.keys <= max_keys
        held = {k for k in last_use if limiter.retry_after(k) > 0}
        assert len(held) == limiter.stats.keys
        assert key in held
        # Every dropped key was used less recently than every held key.
        if held and len(held) < len(last_use):
            assert max(last_use[k] for k in last_use if k not in held) < min(
                last_use[k] for k in held
            )
        # A key is kept while fewer than max_keys // 2 other keys were used since.
        for k in last_use:
            others = {keys[i] for i in range(last_use[k] + 1, step + 1)} - {k}
            if len(others) < max(1, max_keys // 2):
                assert k in held


def test_a_million_keys_are_held_within_max_keys() -> None:
    limiter = RateLimiter(rate=1, per=1.0, max_keys=1_000)
    for key in range(1_000_000):
        limiter.check(key)
    assert limiter.stats == Stats(admitted=1_000_000, limited=0, keys=1_000)


def test_memory_stays_flat_as_distinct_keys_stream_through() -> None:
    limiter = RateLimiter(rate=1, per=1.0, max_keys=1_000)
    tracemalloc.start()
    try:
        for key in range(20_000):
            limiter.check(key)
        gc.collect()
        early, _ = tracemalloc.get_traced_memory()
        for key in range(20_000, 120_000):
            limiter.check(key)
        gc.collect()
        late, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Both readings are at the same point of a generation, so the dicts are alike.
    assert late - early < 4 * 1024


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("rate", 0), ("rate", -1), ("rate", math.nan), ("rate", math.inf), ("rate", "5"),
        ("rate", True), ("rate", None),
        ("per", 0), ("per", -1.0), ("per", math.nan), ("per", math.inf), ("per", "60"),
        ("per", False),
        ("burst", 0), ("burst", 0.5), ("burst", math.nan), ("burst", math.inf), ("burst", "2"),
        ("burst", True),
        ("max_keys", 0), ("max_keys", 1.5), ("max_keys", True), ("max_keys", None),
        ("clock", 12.0),
    ],
)  # fmt: skip
def test_bad_options_raise_invalid_option_error(option: str, value: object) -> None:
    options: dict[str, object] = {"rate": 5, "per": 60.0, option: value}
    with pytest.raises(InvalidOptionError, match=rf"RateLimiter\({option}=") as info:
        RateLimiter(**options)  # type: ignore[arg-type]
    assert info.value.option == option


def test_not_thread_safe_is_documented() -> None:
    assert "not thread-safe" in (RateLimiter.__doc__ or "")


@pytest.mark.anyio
async def test_acquire_admits_at_once_when_allowed() -> None:
    limiter = RateLimiter(rate=2, per=60.0)
    await limiter.acquire("ada")
    await limiter.acquire("ada", timeout=0)
    assert limiter.stats == Stats(admitted=2, limited=0, keys=1)


@pytest.mark.anyio
async def test_acquire_sleeps_until_admitted() -> None:
    limiter = RateLimiter(rate=1, per=0.02)
    limiter.check("ada")
    waited = limiter.retry_after("ada")
    assert waited > 0
    await limiter.acquire("ada")
    # Admitted, and its unit consumed: the next one has to wait again.
    assert limiter.retry_after("ada") > 0
    assert limiter.stats == Stats(admitted=2, limited=0, keys=1)


@pytest.mark.anyio
async def test_acquire_with_cost_waits_for_enough_units() -> None:
    limiter = RateLimiter(rate=2, per=0.02, burst=2)
    limiter.check("ada", cost=2)
    await limiter.acquire("ada", cost=2)
    assert limiter.retry_after("ada", cost=2) > 0


@pytest.mark.anyio
async def test_cancelled_acquire_consumes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=3600.0, clock=clock)
    limiter.check("ada")
    before = limiter.retry_after("ada")
    with anyio.move_on_after(0.01) as scope:
        await limiter.acquire("ada")
    assert scope.cancelled_caught
    assert limiter.retry_after("ada") == before
    assert limiter.stats == Stats(admitted=1, limited=0, keys=1)
    clock.advance(3600.0)
    limiter.check("ada")


@pytest.mark.anyio
async def test_acquire_cancelled_before_it_starts_consumes_nothing() -> None:
    limiter = RateLimiter(rate=1, per=3600.0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire("ada")
    assert limiter.retry_after("ada") == 0.0
    assert limiter.stats.admitted == 0


@pytest.mark.anyio
async def test_acquire_timeout_raises_at_once_with_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=3600.0, clock=clock)
    limiter.check("ada")
    clock.advance(600.0)
    with anyio.fail_after(10):  # a safety net: the refusal does not sleep at all
        with pytest.raises(RateLimitedError) as info:
            await limiter.acquire("ada", timeout=60.0)
    assert info.value.retry_after == pytest.approx(3000.0)
    assert info.value.key == "ada"
    assert limiter.stats == Stats(admitted=1, limited=1, keys=1)


@pytest.mark.anyio
@pytest.mark.parametrize("start", [0.0, 1e9, -5e8])
async def test_acquire_timeout_does_not_depend_on_the_clocks_origin(start: float) -> None:
    clock = FakeClock(start)
    limiter = RateLimiter(rate=1, per=3600.0, clock=clock)
    limiter.check("ada")
    with anyio.fail_after(10), pytest.raises(RateLimitedError) as info:
        await limiter.acquire("ada", timeout=3599.0)
    assert info.value.retry_after == pytest.approx(3600.0)


@pytest.mark.anyio
async def test_acquire_within_timeout_waits_and_is_admitted() -> None:
    limiter = RateLimiter(rate=1, per=0.02)
    limiter.check("ada")
    await limiter.acquire("ada", timeout=5.0)
    assert limiter.stats == Stats(admitted=2, limited=0, keys=1)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"timeout": -1}, ValueError), ({"timeout": math.nan}, ValueError),
     ({"timeout": "1"}, TypeError), ({"cost": 2}, ValueError), ({"cost": "1"}, TypeError)],
)  # fmt: skip
async def test_acquire_refuses_bad_arguments_at_once(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    limiter = RateLimiter(rate=1, per=1.0)
    with pytest.raises(error):
        await limiter.acquire("ada", **kwargs)  # type: ignore[arg-type]
    assert limiter.stats.admitted == 0


@pytest.mark.anyio
async def test_acquire_unhashable_key_is_a_type_error() -> None:
    limiter = RateLimiter(rate=1, per=1.0)
    with pytest.raises(TypeError, match="not hashable"):
        await limiter.acquire({"user": 1})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_concurrent_acquires_on_one_key_are_each_admitted_once() -> None:
    limiter = RateLimiter(rate=1, per=0.01, burst=1)
    admitted: list[int] = []

    async def ask(number: int) -> None:
        await limiter.acquire("ada")
        admitted.append(number)

    async with anyio.create_task_group() as task_group:
        for number in range(5):
            task_group.start_soon(ask, number)
    assert sorted(admitted) == list(range(5))
    assert limiter.stats == Stats(admitted=5, limited=0, keys=1)


# The model: exact GCRA in fractions, on the float times the limiter saw.
TOLERANCE = Fraction(1, 10**7)


class RateLimiterMachine(RuleBasedStateMachine):
    """Random arrivals, costs and clock steps against exact arithmetic.

    The clock moves in whole milliseconds and the rates are whole numbers, so every
    true decision is either exactly on a boundary (the model admits within a
    tolerance far above float rounding) or far from one.
    """

    @initialize(
        rate=st.integers(1, 20),
        per=st.sampled_from([0.1, 0.7, 1.0, 3.0, 60.0]),
        extra_burst=st.integers(0, 3),
        start=st.sampled_from([0.0, 0.1, 1 / 3, 12345.678, 1e6 + 0.1]),
    )
    def setup(self, rate: int, per: float, extra_burst: int, start: float) -> None:
        self.clock = FakeClock(start)
        self.burst = rate + extra_burst
        self.limiter = RateLimiter(rate=rate, per=per, burst=self.burst, clock=self.clock)
        self.interval = Fraction(per) / rate
        self.tau = self.interval * self.burst
        self.tats: dict[int, Fraction] = {}
        self.admitted = 0
        self.refused = 0

    def model_wait(self, key: int, cost: int) -> tuple[Fraction, Fraction]:
        now = Fraction(self.clock.now)
        full = max(self.tats.get(key, now), now) + cost * self.interval
        return full, full - now - self.tau

    @rule(milliseconds=st.integers(0, 5_000))
    def advance(self, milliseconds: int) -> None:
        self.clock.advance(milliseconds / 1000)

    @rule(key=st.integers(0, 3), data=st.data())
    def check(self, key: int, data: st.DataObject) -> None:
        cost = data.draw(st.integers(1, self.burst))
        full, excess = self.model_wait(key, cost)
        if excess <= TOLERANCE:
            self.limiter.check(key, cost)
            self.tats[key] = full
            self.admitted += 1
        else:
            error = limited(self.limiter, key, cost)
            assert error.retry_after == pytest.approx(float(excess), abs=1e-6)
            self.refused += 1

    @rule(key=st.integers(0, 3), data=st.data())
    def retry_after(self, key: int, data: st.DataObject) -> None:
        cost = data.draw(st.integers(1, self.burst))
        _, excess = self.model_wait(key, cost)
        expected = float(excess) if excess > TOLERANCE else 0.0
        assert self.limiter.retry_after(key, cost) == pytest.approx(expected, abs=1e-6)

    @precondition(lambda self: self.tats)
    @rule(data=st.data())
    def wait_then_check(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.tats)))
        cost = data.draw(st.integers(1, self.burst))
        self.clock.advance(self.limiter.retry_after(key, cost))
        full, excess = self.model_wait(key, cost)
        assert excess <= TOLERANCE
        self.limiter.check(key, cost)  # admitted at exactly the time retry_after named
        self.tats[key] = full
        self.admitted += 1

    @rule(key=st.integers(0, 3))
    def over_burst(self, key: int) -> None:
        with pytest.raises(ValueError, match="burst"):
            self.limiter.check(key, self.burst + 1)

    @invariant()
    def stats_are_exact(self) -> None:
        assert self.limiter.stats == Stats(self.admitted, self.refused, keys=len(self.tats))


TestRateLimiterModel = RateLimiterMachine.TestCase
TestRateLimiterModel.settings = settings(max_examples=100, stateful_step_count=30)
