"""One bot process for the multi-process RedisRateLimiter test.

``python redis_ratelimit_worker.py URL PROCESSES CHECKS`` waits until PROCESSES
workers are ready (a counter in Redis), so that they all hammer the key at once,
then makes CHECKS concurrent checks of one key and prints how many were admitted.
"""

from __future__ import annotations

import sys

import anyio
from redis.asyncio import Redis

from botperf import RateLimitedError
from botperf.redis import RedisRateLimiter

KEY = "flooder"


async def main(url: str, processes: int, checks: int) -> None:
    async with Redis.from_url(url) as client:
        # A burst of 10, refilled once an hour: nothing refills while the test runs.
        limiter = RedisRateLimiter(client, rate=10, per=3600.0)
        admitted = 0

        async def check() -> None:
            nonlocal admitted
            try:
                await limiter.check(KEY)
            except RateLimitedError:
                return
            admitted += 1

        await client.incr("ready")
        with anyio.fail_after(30):
            # Polling: the state is in Redis, there is no event to wait on.
            while int(await client.get("ready") or 0) < processes:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        async with anyio.create_task_group() as task_group:
            for _ in range(checks):
                task_group.start_soon(check)
        print(admitted)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
