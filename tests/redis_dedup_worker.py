"""One bot process for the multi-process RedisDeduplicator tests.

``python redis_dedup_worker.py URL MODE CALLS FOLLOWERS`` makes CALLS concurrent calls
with one key and prints their results as a JSON list. The executed function counts
itself with ``INCR executions`` in Redis, then, by MODE:

- ``answer``: waits until FOLLOWERS other processes follow the execution (subscribed to
  its channel), so that every process shares it, then returns ``{"answer": 42}``.
- ``hang``: sets ``started`` and sleeps until the process is killed.
- ``quick``: returns ``"from the taker"``.
"""

from __future__ import annotations

import json
import sys

import anyio
from redis.asyncio import Redis

from botperf.redis import RedisDeduplicator

KEY = "what is the capital of France?"
CHANNEL = 'botperf:dedup:done:"what is the capital of France?"'


async def main(url: str, mode: str, calls: int, followers: int) -> None:
    async with Redis.from_url(url) as client, RedisDeduplicator(client, lock_ttl=1.0) as dedup:

        async def ask() -> object:
            await client.incr("executions")
            if mode == "hang":
                await client.set("started", 1)
                await anyio.sleep_forever()
            if mode == "quick":
                return "from the taker"
            with anyio.fail_after(30):
                # Polling: the state is in Redis, there is no event to wait on.
                while (await client.pubsub_numsub(CHANNEL))[0][1] < followers:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            return {"answer": 42}

        results: list[object] = []
        go = anyio.Event()

        async def call() -> None:
            await go.wait()
            results.append(await dedup.run(KEY, ask))

        async with anyio.create_task_group() as task_group:
            for _ in range(calls):
                task_group.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            go.set()  # every call starts in the same loop turn: one flight in this process
        print(json.dumps({"results": results, "takeovers": dedup.stats.takeovers}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
