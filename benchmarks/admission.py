"""Admission control: RateLimiter and FairLimiter against their peers and the floors.

* ``check`` per call, cycling over 10,000 keys, every request admitted: a minimal GCRA
  dict of floats (the floor, and the baseline), ``RateLimiter.check``, `limits`'
  fixed and moving windows on its in-memory storage, and a dict of
  ``aiolimiter.AsyncLimiter`` (one per key, ``await acquire()`` on asyncio).
* ``FairLimiter`` uncontended: ``async with slot(key)`` entered and left by one task,
  against ``anyio.CapacityLimiter`` (the baseline) and ``asyncio.Semaphore``, on
  asyncio and on trio.
* The flood: 4 slots, one user queues 200 requests of 50 ms of work, then 20 other
  users send one request each: their waits for a slot, behind a FIFO
  ``asyncio.Semaphore(4)`` and behind ``FairLimiter(4)``. Twice: the 20 arriving
  25 ms apart (40 requests a second, half of what the slots serve), and all at once.
* Memory: a million distinct keys through one ``RateLimiter`` (``max_keys=100,000``),
  traced with :mod:`tracemalloc` from the 200,000th key on: the growth should be flat.
* With a redis-server installed: ``RedisRateLimiter.check`` against a bare ``PING``
  (one round trip, the floor) and a fixed window by hand (``INCR`` + ``PEXPIRE`` in
  one pipeline).

The per-call groups are timed in CPU time of this process (:func:`time.process_time`)
so that other processes on a shared machine do not count; the flood in wall-clock
time, which is what a user waits.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager

import anyio
from aiolimiter import AsyncLimiter
from limits import RateLimitItemPerHour
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from botperf import FairLimiter, RateLimitedError, RateLimiter

from ._harness import Measurement, Report, Target, tick

KEYS = 10_000
# Enough for every request of a run to be admitted: the checks measure the bookkeeping.
RATE, PER = 1_000_000, 3600.0
SLOTS = 4
FLOOD = 200
LATE_USERS = 20
WORK = 0.05
SPACING = 0.025
MEMORY_KEYS = 1_000_000
MEMORY_KEYS_QUICK = 200_000
MEMORY_FROM = 200_000
MEMORY_FROM_QUICK = 100_000

GCRA = "minimal GCRA dict (the floor)"
CHECK = "botperf RateLimiter.check"
FIXED = "limits FixedWindowRateLimiter.hit (memory)"
MOVING = "limits MovingWindowRateLimiter.hit (memory)"
AIOLIMITER = "dict of aiolimiter.AsyncLimiter, await acquire()"
CAPACITY = "anyio.CapacityLimiter"
SEMAPHORE = "asyncio.Semaphore"
FAIR = "botperf FairLimiter.slot(key)"
FIFO = "asyncio.Semaphore(4), FIFO"
FAIR_FLOOD = "botperf FairLimiter(4)"


def cpu_ns_per_op(operation: Callable[[], object], number: int) -> float:
    """CPU nanoseconds per call of ``operation`` over ``number`` calls, the GC paused."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.process_time_ns()
        for _ in range(number):
            operation()
        elapsed = time.process_time_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    tick()
    return elapsed / number


async def async_cpu_ns_per_op(operation: Callable[[], Awaitable[object]], number: int) -> float:
    """Like :func:`cpu_ns_per_op` for a coroutine function, awaited in the running loop."""
    start = time.process_time_ns()
    for _ in range(number):
        await operation()
    elapsed = time.process_time_ns() - start
    tick()
    return elapsed / number


class MinimalGcra:
    """The least a per-key GCRA can do: a dict of floats, unbounded, no counters."""

    def __init__(self, rate: float, per: float) -> None:
        self.interval = per / rate
        self.tau = self.interval * rate
        self.tats: dict[Hashable, float] = {}

    def check(self, key: Hashable) -> bool:
        now = time.monotonic()
        tat = self.tats.get(key, now)
        if tat < now:
            tat = now
        tat += self.interval
        if tat - now > self.tau:
            return False
        self.tats[key] = tat
        return True


def check_per_call(number: int, repeat: int) -> dict[str, list[float]]:
    keys = [f"user{number}" for number in range(KEYS)]
    gcra = MinimalGcra(RATE, PER)
    limiter = RateLimiter(RATE, PER)
    item = RateLimitItemPerHour(RATE)
    fixed_storage, moving_storage = MemoryStorage(), MemoryStorage()
    fixed = FixedWindowRateLimiter(fixed_storage)
    moving = MovingWindowRateLimiter(moving_storage)

    def cycling(call: Callable[[str], object]) -> Callable[[], object]:
        stream = itertools.cycle(keys)
        return lambda: call(next(stream))

    contenders: dict[str, Callable[[], object]] = {
        GCRA: cycling(gcra.check),
        CHECK: cycling(limiter.check),
        FIXED: cycling(lambda key: fixed.hit(item, key)),
        MOVING: cycling(lambda key: moving.hit(item, key)),
    }
    samples: dict[str, list[float]] = {name: [] for name in [*contenders, AIOLIMITER]}
    # Interleaved, so that a noisy neighbour hurts every contender alike.
    for _ in range(repeat):
        for name, operation in contenders.items():
            samples[name].append(cpu_ns_per_op(operation, number))
            for storage in (fixed_storage, moving_storage):
                # Its expiry thread runs while limits is timed, not while the others are.
                storage.timer.join()
        samples[AIOLIMITER].append(asyncio.run(aiolimiter_per_call(keys, number)))
    assert limiter.stats.limited == 0
    assert limiter.stats.admitted == number * repeat
    return samples


async def aiolimiter_per_call(keys: list[str], number: int) -> float:
    limiters: dict[str, AsyncLimiter] = {}
    stream = itertools.cycle(keys)

    async def acquire() -> None:
        key = next(stream)
        limiter = limiters.get(key)
        if limiter is None:
            limiter = limiters[key] = AsyncLimiter(RATE, PER)
        await limiter.acquire()

    for _ in range(KEYS):  # every key's limiter built first, as for the others
        await acquire()
    return await async_cpu_ns_per_op(acquire, number)


def uncontended(backend: str, number: int, repeat: int) -> dict[str, list[float]]:
    async def main() -> dict[str, list[float]]:
        capacity = anyio.CapacityLimiter(SLOTS)
        fair = FairLimiter(SLOTS)

        async def enter(limiter: AbstractAsyncContextManager[object]) -> None:
            async with limiter:
                pass

        async def enter_fair() -> None:
            async with fair.slot("user"):
                pass

        contenders: dict[str, Callable[[], Awaitable[object]]] = {
            CAPACITY: lambda: enter(capacity),
            FAIR: enter_fair,
        }
        if backend == "asyncio":
            semaphore = asyncio.Semaphore(SLOTS)
            contenders[SEMAPHORE] = lambda: enter(semaphore)
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(repeat):
            for name, operation in contenders.items():
                samples[name].append(await async_cpu_ns_per_op(operation, number))
        assert fair.stats.in_use == 0
        return samples

    return anyio.run(main, backend=backend)


async def flood(name: str, *, at_once: bool) -> list[float]:
    """Milliseconds each late user waited for a slot, behind a queued flood."""
    fifo = asyncio.Semaphore(SLOTS)
    fair = FairLimiter(SLOTS)

    def slot(user: str) -> AbstractAsyncContextManager[object]:
        return fifo if name == FIFO else fair.slot(user)

    waits: list[float] = []

    async def request(user: str, record: bool) -> None:
        arrived = time.perf_counter()
        async with slot(user):
            if record:
                waits.append((time.perf_counter() - arrived) * 1000)
            await anyio.sleep(WORK)

    async with anyio.create_task_group() as everyone:
        for _ in range(FLOOD):
            everyone.start_soon(request, "flooder", False)
        await anyio.wait_all_tasks_blocked()  # all 200 queued (4 of them working)
        async with anyio.create_task_group() as late:
            for number in range(LATE_USERS):
                if not at_once:
                    await anyio.sleep(SPACING)
                late.start_soon(request, f"user{number}", True)
        everyone.cancel_scope.cancel()  # the rest of the flood is not measured
    assert len(waits) == LATE_USERS
    return waits


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def flood_measurements(repeat: int) -> list[Measurement]:
    measurements = []
    for at_once in (False, True):
        arrival = "all at once" if at_once else f"{SPACING * 1000:.0f} ms apart"
        group = (
            f"flood: {FLOOD} requests queued by one user, then {LATE_USERS} users "
            f"{arrival}, {SLOTS} slots, {WORK * 1000:.0f} ms of work"
        )
        for name in (FIFO, FAIR_FLOOD):
            runs = [asyncio.run(flood(name, at_once=at_once)) for _ in range(repeat)]
            for _ in runs:
                tick()
            for statistic, summarise in (("p50", statistics.median), ("p99", p99)):
                measurements.append(
                    Measurement(
                        group=f"{group}: late users' {statistic} wait",
                        implementation=name,
                        unit="ms",
                        samples=tuple(summarise(run) for run in runs),
                        baseline=name == FIFO,
                        params={"arrival": arrival, "statistic": statistic},
                    )
                )
    return measurements


def memory_growth(keys: int, start: int) -> tuple[int, int]:
    """Bytes allocated between the ``start``-th and the ``keys``-th distinct key, and the peak.

    Traced from the first key on: the generations' dicts are replaced as keys stream
    through, so a trace started later would count the new ones but not free the old.
    Both readings are at the same point of a generation (multiples of 50,000 keys).
    """
    limiter = RateLimiter(RATE, PER)  # max_keys=100,000, generations of 50,000
    gc.collect()
    tracemalloc.start()
    try:
        for key in range(start):
            limiter.check(key)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for key in range(start, keys):
            limiter.check(key)
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert limiter.stats.keys == 100_000
    tick()
    return current - baseline, peak - baseline


def redis_measurements(number: int, repeat: int) -> list[Measurement] | str:
    try:
        from redis.asyncio import Redis

        from botperf.redis import RedisRateLimiter
        from tests.redis_server import RedisServer, RedisServerError
    except ImportError as exc:  # pragma: no cover - the bench extra installs redis
        return f"RedisRateLimiter skipped: {exc}"
    try:
        server = RedisServer()
    except RedisServerError as exc:
        return f"RedisRateLimiter skipped: {exc}"

    async def main(url: str) -> dict[str, list[float]]:
        async with Redis.from_url(url) as client:
            limiter = RedisRateLimiter(client, rate=RATE, per=PER)
            stream = itertools.cycle(range(KEYS))

            async def check() -> None:
                await limiter.check(next(stream))

            async def fixed_window() -> None:
                key = f"window:{next(stream)}"
                async with client.pipeline(transaction=False) as pipe:
                    pipe.incr(key)
                    pipe.pexpire(key, 3_600_000, nx=True)
                    count, _ = await pipe.execute()
                if count > RATE:
                    raise RateLimitedError(key, None)

            contenders: dict[str, Callable[[], Awaitable[object]]] = {
                "redis-py PING (one round trip, the floor)": client.ping,
                "INCR + PEXPIRE pipeline (a fixed window by hand)": fixed_window,
                "botperf RedisRateLimiter.check": check,
            }
            samples: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(repeat):
                for name, operation in contenders.items():
                    start = time.perf_counter_ns()
                    for _ in range(number):
                        await operation()
                    samples[name].append((time.perf_counter_ns() - start) / number / 1000)
                    tick()
            return samples

    with server:
        samples = asyncio.run(main(server.url))
    return [
        Measurement(
            group="Redis: one check, one task, over loopback (wall clock)",
            implementation=name,
            unit="µs",
            samples=tuple(values),
            baseline=name.startswith("redis-py PING"),
        )
        for name, values in samples.items()
    ]


def run(quick: bool) -> Report:
    number, repeat = (20_000, 5) if quick else (100_000, 9)
    report = Report(name="admission: RateLimiter and FairLimiter")

    checks = check_per_call(number, repeat)
    group = f"check per call, {KEYS:,} keys, all admitted (CPU time)"
    for name, values in checks.items():
        report.measurements.append(
            Measurement(group, name, "ns", tuple(values), baseline=name == GCRA)
        )

    for backend in ("asyncio", "trio"):
        samples = uncontended(backend, number, repeat)
        report.measurements += [
            Measurement(
                f"uncontended slot: enter and leave on {backend} (CPU time)",
                name,
                "ns",
                tuple(values),
                baseline=name == CAPACITY,
            )
            for name, values in samples.items()
        ]

    report.measurements += flood_measurements(1 if quick else 3)

    keys, start = (MEMORY_KEYS_QUICK, MEMORY_FROM_QUICK) if quick else (MEMORY_KEYS, MEMORY_FROM)
    growth, peak = memory_growth(keys, start)
    report.measurements.append(
        Measurement(
            f"memory from the {start:,}th to the {keys:,}th distinct key (tracemalloc)",
            "botperf RateLimiter (max_keys=100,000)",
            "B",
            (float(growth),),
        )
    )
    report.notes.append(f"tracemalloc peak over those keys: {peak:,} B above the start")

    redis = redis_measurements(500 if quick else 2_000, 3 if quick else 5)
    if isinstance(redis, str):
        report.notes.append(redis)
    else:
        report.measurements += redis

    def ratio(group: str, name: str, baseline: str) -> float:
        """The median of the ratios paired by repetition: a noisy moment hits both alike."""
        values, bases = report.find(group, name).samples, report.find(group, baseline).samples
        return statistics.median(value / base for value, base in zip(values, bases, strict=True))

    spaced = (
        f"flood: {FLOOD} requests queued by one user, then {LATE_USERS} users "
        f"{SPACING * 1000:.0f} ms apart, {SLOTS} slots, {WORK * 1000:.0f} ms of work"
    )
    report.targets += [
        Target(f"check vs the {GCRA} (paired)", ratio(group, CHECK, GCRA), 1.5, "x"),
        Target(
            "limits' fixed window per hit / RateLimiter.check (times faster, paired)",
            ratio(group, FIXED, CHECK),
            3.0,
            "x",
            higher_is_better=True,
        ),
        Target(
            "FairLimiter uncontended enter+leave vs anyio.CapacityLimiter, asyncio (paired)",
            ratio("uncontended slot: enter and leave on asyncio (CPU time)", FAIR, CAPACITY),
            1.5,
            "x",
        ),
        Target(
            "FairLimiter uncontended enter+leave vs anyio.CapacityLimiter, trio (paired)",
            ratio("uncontended slot: enter and leave on trio (CPU time)", FAIR, CAPACITY),
            1.5,
            "x",
        ),
        Target(
            f"flood, {LATE_USERS} late users {SPACING * 1000:.0f} ms apart: p99 wait with "
            "FairLimiter",
            report.find(f"{spaced}: late users' p99 wait", FAIR_FLOOD).median,
            100.0,
            "ms",
        ),
        Target(
            f"memory growth over {keys - start:,} more distinct keys",
            float(growth),
            64 * 1024,
            "B",
        ),
    ]
    fifo = report.find(f"{spaced}: late users' p50 wait", FIFO).median
    report.notes.append(
        f"flood: behind the FIFO semaphore the late users' median wait was {fifo:,.0f} ms. "
        f"All {LATE_USERS} at once cannot meet 100 ms under any scheduler: "
        f"{LATE_USERS} requests of {WORK * 1000:.0f} ms on {SLOTS} slots take "
        f"{LATE_USERS // SLOTS * WORK * 1000:.0f} ms, so the last ones wait at least "
        f"{(LATE_USERS // SLOTS - 1) * WORK * 1000:.0f} ms; that case is shown for scale"
    )
    return report
