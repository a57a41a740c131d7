"""RedisRateLimiter against a real redis-server (started by the session's fixture)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from collections.abc import AsyncIterator, Hashable
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis_server import RedisServer, free_port

from botperf import InvalidOptionError, RateLimitedError
from botperf.redis import RedisRateLimiter, RedisUnavailableError

WORKER = Path(__file__).with_name("redis_ratelimit_worker.py")
PREFIXES = (f"test:rate:{number}:" for number in itertools.count())


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only; trio gets a clear error (tested below).
    return "asyncio"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_url) as client:
        yield client


async def refused(limiter: RedisRateLimiter, key: Hashable, cost: float = 1) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as info:
        await limiter.check(key, cost)
    return info.value


@pytest.mark.anyio
async def test_a_burst_is_admitted_then_refused_with_retry_after(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=5, per=60.0)
    for _ in range(5):
        await limiter.check("ada")
    error = await refused(limiter, "ada")
    assert error.key == "ada"
    assert error.retry_after is not None
    assert 11.0 < error.retry_after <= 12.0
    assert 11.0 < await limiter.retry_after("ada") <= error.retry_after


@pytest.mark.anyio
async def test_a_check_after_retry_after_succeeds(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=1, per=0.05)
    await limiter.check("ada")
    wait = await limiter.retry_after("ada")
    assert 0 < wait <= 0.05
    await anyio.sleep(wait)
    await limiter.check("ada")


@pytest.mark.anyio
async def test_no_unit_of_a_burst_is_lost_to_rounding(client: Redis) -> None:
    # Periods that floats cannot represent exactly (0.7, 1/3 times a scale), each long
    # enough that no unit refills while the burst is spent, however slow the machine.
    for rate, per in [(3, 1.0e4), (7, 0.7e4), (1000, 3600.0e3), (6, 1e4 / 3)]:
        limiter = RedisRateLimiter(client, rate=rate, per=per, prefix=next(PREFIXES))
        for _ in range(rate):
            await limiter.check("ada")
        await refused(limiter, "ada")


@pytest.mark.anyio
async def test_a_refused_check_consumes_nothing(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=2, per=3600.0)
    await limiter.check("ada")
    await limiter.check("ada")
    before = await limiter.retry_after("ada")
    for _ in range(10):
        await refused(limiter, "ada")
    assert await limiter.retry_after("ada") <= before
    # A cheaper request would still have to wait only for its own unit.
    assert await limiter.retry_after("ada", cost=2) == pytest.approx(before + 1800.0, abs=1.0)


@pytest.mark.anyio
async def test_cost_consumes_that_many_units(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=4, per=4000.0)
    await limiter.check("ada", cost=3)
    assert await limiter.retry_after("ada", cost=1) == 0.0
    assert 1990 < await limiter.retry_after("ada", cost=3) <= 2000
    await refused(limiter, "ada", cost=2)
    await limiter.check("ada", cost=1)
    await refused(limiter, "ada", cost=1)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cost", "error"),
    [(5, ValueError), (0, ValueError), (math.nan, ValueError), ("1", TypeError),
     (True, TypeError)],
)  # fmt: skip
async def test_a_bad_cost_fails_before_any_round_trip(cost: object, error: type[Exception]) -> None:
    # No server listens there: the error comes before any attempt to reach it.
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", rate=4, per=1.0)
    async with limiter:
        for method in (limiter.check, limiter.retry_after, limiter.acquire):
            with pytest.raises(error, match="cost"):
                await method("ada", cost)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_keys_are_independent_and_typed(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=1, per=3600.0)
    await limiter.check(1)
    await refused(limiter, 1)
    await limiter.check("1")  # another key than the int 1
    await limiter.check(("guild", 1))
    assert await limiter.retry_after("bob") == 0.0


@pytest.mark.anyio
async def test_unhashable_and_unencodable_keys_are_type_errors(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=1, per=1.0)
    with pytest.raises(TypeError, match="not hashable"):
        await limiter.check(["ada"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"RedisRateLimiter\.check"):
        await limiter.check(object())
    assert await client.dbsize() == 0


@pytest.mark.anyio
async def test_a_key_expires_once_its_bucket_is_full_again(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=5, per=60.0, prefix="bot:rate:")
    await limiter.check("ada")
    await limiter.check("ada")
    assert await client.keys("*") == [b'bot:rate:"ada"']
    ttl = await client.pttl('bot:rate:"ada"')
    assert 23_000 < ttl <= 24_000  # two units of 12 s each to refill


@pytest.mark.anyio
async def test_limiters_on_one_prefix_share_each_budget(client: Redis, redis_url: str) -> None:
    async with RedisRateLimiter(redis_url, rate=3, per=3600.0) as other:
        limiter = RedisRateLimiter(client, rate=3, per=3600.0)
        await limiter.check("ada")
        await other.check("ada")
        await limiter.check("ada")
        await refused(other, "ada")
        separate = RedisRateLimiter(client, rate=3, per=3600.0, prefix="elsewhere:")
        await separate.check("ada")


@pytest.mark.anyio
async def test_acquire_waits_until_admitted(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=1, per=0.05)
    await limiter.check("ada")
    await limiter.acquire("ada", timeout=5.0)
    assert await limiter.retry_after("ada") > 0


@pytest.mark.anyio
async def test_acquire_timeout_raises_at_once_with_retry_after(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=1, per=3600.0)
    await limiter.check("ada")
    with anyio.fail_after(10):  # a safety net: the refusal does not sleep at all
        with pytest.raises(RateLimitedError) as info:
            await limiter.acquire("ada", timeout=60.0)
    assert info.value.retry_after is not None
    assert 3590 < info.value.retry_after <= 3600


@pytest.mark.anyio
async def test_cancelled_acquire_consumes_nothing(client: Redis) -> None:
    limiter = RedisRateLimiter(client, rate=2, per=3600.0, burst=2)
    await limiter.check("ada", cost=2)
    before = await limiter.retry_after("ada")
    with anyio.move_on_after(0.05) as scope:
        await limiter.acquire("ada")
    assert scope.cancelled_caught
    assert await limiter.retry_after("ada") <= before


@pytest.mark.anyio
async def test_the_client_it_was_given_stays_open(client: Redis) -> None:
    async with RedisRateLimiter(client, rate=1, per=1.0) as limiter:
        await limiter.check("ada")
    assert await client.ping()
    assert "RedisRateLimiter" in repr(limiter)
    assert limiter.prefix == "botperf:rate:"


@pytest.mark.anyio
async def test_a_client_decoding_responses_works(redis_url: str) -> None:
    async with Redis.from_url(redis_url, decode_responses=True) as client:
        limiter = RedisRateLimiter(client, rate=1, per=60.0)
        await limiter.check("ada")
        error = await refused(limiter, "ada")
        assert error.retry_after is not None
        assert 59 < error.retry_after <= 60


@pytest.mark.anyio
async def test_an_unreachable_redis_is_redis_unavailable_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with RedisRateLimiter(url, rate=1, per=1.0, timeout=2.0) as limiter:
        with pytest.raises(RedisUnavailableError, match=r"RedisRateLimiter\.check"):
            await limiter.check("ada")


@pytest.mark.parametrize("backend", ["trio"])
def test_on_trio_it_raises_redis_asyncio_required_error(backend: str, redis_url: str) -> None:
    async def main() -> None:
        limiter = RedisRateLimiter(redis_url, rate=1, per=1.0)
        with pytest.raises(RuntimeError, match=r"RedisRateLimiter\.check"):
            await limiter.check("ada")

    anyio.run(main, backend=backend)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("rate", 0), ("rate", math.nan), ("rate", math.inf), ("rate", "5"), ("rate", True),
        ("per", 0), ("per", -1), ("per", math.inf), ("per", None),
        ("burst", 0.5), ("burst", math.nan), ("burst", False),
        ("prefix", ""), ("prefix", b"x:"),
        ("timeout", 0), ("timeout", math.nan),
        ("redis", 6379),
    ],
)  # fmt: skip
def test_bad_options_raise_invalid_option_error(option: str, value: object) -> None:
    options: dict[str, object] = {"redis": "redis://127.0.0.1:1/0", "rate": 5, "per": 60.0}
    options[option] = value
    with pytest.raises(InvalidOptionError, match=rf"RedisRateLimiter\({option}=") as info:
        RedisRateLimiter(**options)  # type: ignore[arg-type]
    assert info.value.option == option


def test_four_processes_hammering_one_key_are_admitted_exactly_burst_times(
    redis_url: str,
) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), redis_url, "4", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    admitted = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        admitted.append(int(out))
    assert sum(admitted) == 10  # the burst, among 200 checks
    assert all(count >= 0 for count in admitted)


# The model: with one unit refilled per 100,000 s, nothing refills while it runs, so each
# key's budget is exactly its burst minus the costs admitted so far.
@settings(max_examples=40)
@given(
    burst=st.integers(1, 6),
    steps=st.lists(
        st.tuples(st.sampled_from(["check", "retry_after"]), st.integers(0, 2), st.integers(1, 6)),
        max_size=25,
    ),
)
@pytest.mark.anyio
async def test_matches_a_model_of_the_remaining_budget(
    redis_server: RedisServer, burst: int, steps: list[tuple[str, int, int]]
) -> None:
    interval = 100_000.0
    async with RedisRateLimiter(
        redis_server.url, rate=1, per=interval, burst=burst, prefix=next(PREFIXES)
    ) as limiter:
        remaining = dict.fromkeys(range(3), burst)
        for operation, key, cost in steps:
            if cost > burst:
                with pytest.raises(ValueError, match="burst"):
                    await limiter.check(key, cost)
                continue
            shortfall = cost - remaining[key]
            if operation == "retry_after":
                wait = await limiter.retry_after(key, cost)
                expected = max(0, shortfall) * interval
                assert wait == pytest.approx(expected, abs=5.0)
            elif shortfall <= 0:
                await limiter.check(key, cost)
                remaining[key] -= cost
            else:
                error = await refused(limiter, key, cost)
                assert error.retry_after == pytest.approx(shortfall * interval, abs=5.0)
