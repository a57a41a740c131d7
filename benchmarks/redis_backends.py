"""botperf.redis against a local redis-server: round trips and latency per operation.

The benchmark starts its own redis-server (``tests/redis_server.py``, the helper the
tests' fixture uses) on a free loopback port, and is skipped with a note where
redis-server is not installed. One client, one task: the latencies are a round trip
over loopback plus Redis's work plus redis-py's, on this machine.

History, append-then-read of one channel drawn at random from 1,000 (``steady``, no
eviction) or 2,000 (``churn``, about half the appends evict), on stores holding at
most 1,000 channels of 50 messages, first filled:

- ``HistoryStore (in memory)``: the in-process store, for scale.
- ``RedisHistoryStore``: ``await store.append()`` then ``await store.get()``, one Lua
  script each.
- ``redis-py, a command per step``: the same updates as plain commands awaited one by
  one (RPUSH, LTRIM, ZADD, ZCARD; ZSCORE, ZADD, LRANGE), without eviction, counters,
  or atomicity: what the scripts save.
- ``redis-py PING x2 (the floor)``: two PINGs, the cost of two round trips alone.

Deduplication:

- ``dedup call, distinct keys``: one call at a time, each with a new key, of an async
  function returning at once: a bare ``await``, the in-process ``Deduplicator``, and
  ``RedisDeduplicator`` (take the lock, run, publish the outcome and free the lock).
- ``cross-process fan-out``: 4 deduplicators, each with its own Redis client as a
  process would have, each given 50 concurrent identical calls of a function that
  takes 50 ms (an LLM call): executions and the time until every caller has its
  result, for ``RedisDeduplicator`` against 4 independent in-process ``Deduplicator``
  (what 4 bot processes would do without Redis).

Round trips are counted on the client, as the writes its connections make.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

from redis.asyncio import Connection, Redis

from botperf import Deduplicator, HistoryStore
from botperf.redis import RedisDeduplicator, RedisHistoryStore
from tests.redis_server import RedisServer, RedisServerError

from ._harness import Measurement, Report, async_ns_per_op, ns_per_op, tick

CHANNELS = 1_000
MAX_MESSAGES = 50
TEXT = "hello there, how is the weather today?"
WORKLOADS = {"steady": CHANNELS, "churn": 2 * CHANNELS}
IN_MEMORY = "HistoryStore (in memory)"
REDIS_STORE = "RedisHistoryStore"
PLAIN = "redis-py, a command per step"
PING = "redis-py PING x2 (the floor)"
FAN_OUT_EXECUTIONS = "cross-process fan-out, 4 x 50 calls of a 50 ms function: executions"


class CountingConnection(Connection):
    """A redis-py connection counting its writes: one per round trip (pipelines included)."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


def channel_stream(ids: int) -> Iterator[int]:
    rng = random.Random(ids)
    return itertools.cycle([rng.randrange(ids) for _ in range(10_000)])


def in_memory_operation(channels: Iterator[int]) -> Callable[[], object]:
    store: HistoryStore[int] = HistoryStore(max_channels=CHANNELS, max_messages=MAX_MESSAGES)
    for channel in range(CHANNELS):
        store.append(channel, "user", TEXT)

    def operation() -> object:
        channel = next(channels)
        store.append(channel, "user", TEXT)
        return store.get(channel)

    return operation


async def redis_store_operation(
    client: Redis, prefix: str, channels: Iterator[int]
) -> Callable[[], Awaitable[object]]:
    store: RedisHistoryStore[int] = RedisHistoryStore(
        client, prefix=prefix, max_channels=CHANNELS, max_messages=MAX_MESSAGES
    )
    for channel in range(CHANNELS):
        await store.append(channel, "user", TEXT)

    async def operation() -> object:
        channel = next(channels)
        await store.append(channel, "user", TEXT)
        return await store.get(channel)

    return operation


async def plain_operation(
    client: Redis, prefix: str, channels: Iterator[int]
) -> Callable[[], Awaitable[object]]:
    recency = f"{prefix}recency"
    for channel in range(CHANNELS):
        await client.rpush(f"{prefix}h:{channel}", TEXT)
        await client.zadd(recency, {str(channel): channel})
    clock = itertools.count(CHANNELS)

    async def operation() -> object:
        channel = next(channels)
        key = f"{prefix}h:{channel}"
        await client.rpush(key, TEXT)
        await client.ltrim(key, -MAX_MESSAGES, -1)
        await client.zadd(recency, {str(channel): next(clock)})
        await client.zcard(recency)
        if await client.zscore(recency, str(channel)) is None:
            return ()
        await client.zadd(recency, {str(channel): next(clock)})
        return await client.lrange(key, 0, -1)

    return operation


async def ping_twice(client: Redis) -> object:
    await client.ping()
    return await client.ping()


async def round_trips(operation: Callable[[], Awaitable[object]], number: int) -> float:
    before = CountingConnection.writes
    for _ in range(number):
        await operation()
    return (CountingConnection.writes - before) / number


async def measure_redis(url: str, quick: bool) -> list[Measurement]:
    number, repeat = (500, 5) if quick else (2_000, 9)
    measurements = []
    async with Redis.from_url(url, connection_class=CountingConnection) as client:
        for workload, ids in WORKLOADS.items():
            await client.flushdb()
            group = f"history append+get, {workload} ({ids:,} channel ids, {CHANNELS:,} held)"
            params = {"workload": workload, "channel_ids": ids, "max_channels": CHANNELS}
            operations: dict[str, Callable[[], Awaitable[object]]] = {
                REDIS_STORE: await redis_store_operation(client, "s:", channel_stream(ids)),
                PLAIN: await plain_operation(client, "p:", channel_stream(ids)),
                PING: partial(ping_twice, client),
            }
            for name, operation in operations.items():
                samples = await async_ns_per_op(operation, number=number, repeat=repeat)
                measurements.append(
                    Measurement(
                        group=group,
                        implementation=name,
                        unit="µs/op",
                        samples=tuple(sample / 1_000 for sample in samples),
                        baseline=name == REDIS_STORE,
                        params=params,
                    )
                )
                trips = await round_trips(operation, 200)
                measurements.append(
                    Measurement(
                        group=f"round trips per history append+get, {workload}",
                        implementation=name,
                        unit="round trips",
                        samples=(trips,),
                        params=params,
                    )
                )
    return measurements


async def immediate() -> int:
    return 42


async def measure_dedup_calls(url: str, quick: bool) -> list[Measurement]:
    number, repeat = (500, 5) if quick else (2_000, 9)
    keys = itertools.count()
    measurements = []
    async with Redis.from_url(url, connection_class=CountingConnection) as client:
        local = Deduplicator()
        shared = RedisDeduplicator(client)
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "bare await": immediate,
            "Deduplicator (in process)": lambda: local.run(next(keys), immediate),
            "RedisDeduplicator": lambda: shared.run(next(keys), immediate),
        }
        for name, operation in operations.items():
            samples = await async_ns_per_op(operation, number=number, repeat=repeat)
            measurements.append(
                Measurement(
                    group="dedup call, distinct keys, one at a time",
                    implementation=name,
                    unit="µs/call",
                    samples=tuple(sample / 1_000 for sample in samples),
                    baseline=name == "RedisDeduplicator",
                )
            )
        measurements.append(
            Measurement(
                group="round trips per dedup call, distinct keys",
                implementation="RedisDeduplicator",
                unit="round trips",
                samples=(await round_trips(operations["RedisDeduplicator"], 200),),
            )
        )
    return measurements


async def fan_out(url: str, shared: bool, processes: int, calls: int) -> tuple[float, int]:
    """Wall time (ms) until every caller has its result, and the executions."""
    executions = 0

    async def ask_llm() -> str:
        nonlocal executions
        executions += 1
        await asyncio.sleep(0.05)
        return "Paris"

    clients = [Redis.from_url(url) for _ in range(processes)]
    deduplicators: list[Deduplicator | RedisDeduplicator] = [
        RedisDeduplicator(client) if shared else Deduplicator() for client in clients
    ]
    start = time.perf_counter()
    await asyncio.gather(
        *(dedup.run("capital of France", ask_llm) for dedup in deduplicators for _ in range(calls))
    )
    elapsed = (time.perf_counter() - start) * 1_000
    for client in clients:
        await client.aclose()
    return elapsed, executions


async def measure_fan_out(url: str, quick: bool) -> list[Measurement]:
    repeat = 5 if quick else 9
    measurements = []
    for name, shared in (("RedisDeduplicator", True), ("Deduplicator per process", False)):
        runs = []
        for _ in range(repeat):
            runs.append(await fan_out(url, shared, processes=4, calls=50))
            tick()
        for unit, index in (("ms until all answered", 0), ("executions", 1)):
            measurements.append(
                Measurement(
                    group=f"cross-process fan-out, 4 x 50 calls of a 50 ms function: {unit}",
                    implementation=name,
                    unit="ms" if index == 0 else "executions",
                    samples=tuple(float(run[index]) for run in runs),
                    baseline=shared,
                )
            )
    return measurements


def run(quick: bool) -> Report:
    report = Report(name="redis_backends: botperf.redis against a local redis-server")
    try:
        server = RedisServer()
    except RedisServerError as exc:
        report.notes.append(f"skipped: {exc}")
        return report
    number, repeat = (20_000, 5) if quick else (50_000, 9)
    with server:
        redis_measurements = asyncio.run(measure_redis(server.url, quick))
        dedup_measurements = asyncio.run(measure_dedup_calls(server.url, quick))
        dedup_measurements += asyncio.run(measure_fan_out(server.url, quick))
    for workload, ids in WORKLOADS.items():
        group = f"history append+get, {workload} ({ids:,} channel ids, {CHANNELS:,} held)"
        samples = ns_per_op(in_memory_operation(channel_stream(ids)), number=number, repeat=repeat)
        report.measurements.append(
            Measurement(
                group=group,
                implementation=IN_MEMORY,
                unit="µs/op",
                samples=tuple(sample / 1_000 for sample in samples),
                params={"workload": workload, "channel_ids": ids, "max_channels": CHANNELS},
            )
        )
        report.measurements.extend(m for m in redis_measurements if m.group == group)
    report.measurements.extend(m for m in redis_measurements if m.unit == "round trips")
    report.measurements.extend(dedup_measurements)
    saving = report.find(FAN_OUT_EXECUTIONS, "Deduplicator per process").median
    report.notes.append(
        f"cross-process saving: {saving:.0f} executions of the 50 ms function without Redis, "
        f"{report.find(FAN_OUT_EXECUTIONS, 'RedisDeduplicator').median:.0f} with it"
    )
    report.notes.append(
        "history and dedup call groups: one client and one task over loopback, each call "
        "waiting for its reply before the next"
    )
    return report
