"""Checked by ``mypy --strict``: the admission-control API is a contract."""

from __future__ import annotations

from redis.asyncio import Redis
from typing_extensions import assert_type

from botperf import FairLimiter, FairLimiterStats, RateLimitedError, RateLimiter, RateLimiterStats
from botperf.redis import RedisRateLimiter


async def main() -> None:
    limiter = RateLimiter(5, 60.0, burst=10, max_keys=1_000)
    assert_type(limiter.check(42), None)
    assert_type(limiter.check(("guild", 1), cost=2.5), None)
    assert_type(limiter.retry_after("ann"), float)
    assert_type(await limiter.acquire("ann", timeout=1.0), None)
    assert_type(limiter.stats, RateLimiterStats)
    assert_type(limiter.stats.admitted, int)

    slots = FairLimiter(4, max_per_key=2, max_waiting=100)
    async with slots.slot(42) as entered:
        assert_type(entered, None)
    assert_type(slots.stats, FairLimiterStats)
    assert_type(slots.stats.in_use, int)

    try:
        limiter.check(42)
    except RateLimitedError as exc:
        assert_type(exc.key, object)
        assert_type(exc.retry_after, float | None)

    async with RedisRateLimiter(Redis(), rate=5, per=60.0) as shared:
        assert_type(shared, RedisRateLimiter)
        assert_type(await shared.check(42), None)
        assert_type(await shared.retry_after(42, 2), float)
        assert_type(await shared.acquire(42, timeout=None), None)
