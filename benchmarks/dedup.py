"""Deduplicator against a bare await, a naive Future dict and async-lru's alru_cache.

* Per-call overhead with distinct keys (every call a miss, so every call runs ``fn``):
  on asyncio for all four, on trio for the bare await and botperf.
* The same with an ``fn`` that suspends once (``await anyio.sleep(0)``), as a real call
  does, against the least a design that hosts ``fn`` in a task of its own can cost: a
  bare ``create_task(fn())`` awaited.
* Fan-out: 10 to 100,000 (10,000 with ``--quick``) concurrent callers on one key; wall
  time for all to get the result (each implementation must run ``fn`` exactly once).
* Memory: a million sequential distinct keys (100,000 with ``--quick``) through one
  Deduplicator, traced with :mod:`tracemalloc`; the growth should be flat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import anyio
import trio
from async_lru import alru_cache

from botperf import Deduplicator

from ._harness import Measurement, Report, ScalingChart, Target, async_ns_per_op

FAN_OUT = 10_000  # the size the target is stated for
FAN_OUT_SIZES = (10, 100, 1_000, 10_000, 100_000)
FAN_OUT_SIZES_QUICK = (10, 100, 1_000, 10_000)
RESULT = object()


class NaiveSingleFlight:
    """The usual dict of Futures: cheap, but one cancelled caller cancels them all."""

    def __init__(self) -> None:
        self.futures: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[Any]]) -> Any:
        future = self.futures.get(key)
        if future is not None:
            return await future
        future = self.futures[key] = asyncio.get_running_loop().create_future()
        try:
            result = await fn()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self.futures[key]


async def answer() -> object:
    return RESULT


def overhead_on_asyncio(number: int, repeat: int) -> dict[str, tuple[float, ...]]:
    async def main() -> dict[str, tuple[float, ...]]:
        keys = itertools.count()
        naive = NaiveSingleFlight()
        dedup = Deduplicator()

        @alru_cache(maxsize=16)
        async def cached(key: int) -> object:
            return RESULT

        loop = asyncio.get_running_loop()

        async def in_a_task() -> object:
            """The least any design hosting fn in a task of its own can cost."""
            done: asyncio.Future[object] = loop.create_future()

            async def host() -> None:
                done.set_result(await answer())

            task = loop.create_task(host())
            result = await done
            del task
            return result

        contenders: dict[str, Callable[[], Awaitable[object]]] = {
            "bare await fn()": answer,
            "naive Future dict": lambda: naive.run(next(keys), answer),
            "floor: fn in a new task, awaited via a future": in_a_task,
            "async-lru alru_cache(maxsize=16)": lambda: cached(next(keys)),
            "botperf Deduplicator": lambda: dedup.run(next(keys), answer),
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        # Interleave the repetitions so a noisy neighbour hurts every contender alike.
        for _ in range(repeat):
            for name, operation in contenders.items():
                samples[name] += await async_ns_per_op(operation, number=number, repeat=1)
        assert dedup.stats.executions == dedup.stats.calls
        return {name: tuple(values) for name, values in samples.items()}

    return asyncio.run(main())


async def answer_after_suspending() -> object:
    await anyio.sleep(0)  # noqa: ASYNC115 - the fn as the issue states it, as users write it
    return RESULT


SUSPENDING_BARE = "bare await fn()"
SUSPENDING_TASK = "bare create_task(fn()) + await"
SUSPENDING_LRU = "async-lru alru_cache(maxsize=16)"
SUSPENDING_BOTPERF = "botperf Deduplicator"


def suspending_on_asyncio(number: int, repeat: int) -> dict[str, tuple[float, ...]]:
    """Per-call ns with distinct keys and an ``fn`` that suspends once."""

    async def main() -> dict[str, tuple[float, ...]]:
        keys = itertools.count()
        naive = NaiveSingleFlight()
        dedup = Deduplicator()
        fn = answer_after_suspending

        @alru_cache(maxsize=16)
        async def cached(key: int) -> object:
            return await fn()

        loop = asyncio.get_running_loop()

        async def in_a_task() -> object:
            return await loop.create_task(fn())

        contenders: dict[str, Callable[[], Awaitable[object]]] = {
            SUSPENDING_BARE: fn,
            SUSPENDING_TASK: in_a_task,
            "naive Future dict": lambda: naive.run(next(keys), fn),
            SUSPENDING_LRU: lambda: cached(next(keys)),
            SUSPENDING_BOTPERF: lambda: dedup.run(next(keys), fn),
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(repeat):
            for name, operation in contenders.items():
                samples[name] += await async_ns_per_op(operation, number=number, repeat=1)
        assert dedup.stats.executions == dedup.stats.calls
        return {name: tuple(values) for name, values in samples.items()}

    return asyncio.run(main())


def overhead_on_trio(number: int, repeat: int) -> dict[str, tuple[float, ...]]:
    async def main() -> dict[str, tuple[float, ...]]:
        keys = itertools.count()
        dedup = Deduplicator()
        contenders: dict[str, Callable[[], Awaitable[object]]] = {
            "bare await fn()": answer,
            "botperf Deduplicator": lambda: dedup.run(next(keys), answer),
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(repeat):
            for name, operation in contenders.items():
                samples[name] += await async_ns_per_op(operation, number=number, repeat=1)
        return {name: tuple(values) for name, values in samples.items()}

    return trio.run(main)


def fan_out(callers: int, repeat: int) -> dict[str, tuple[float, ...]]:
    """Milliseconds for ``callers`` concurrent callers on one key to all get the result."""

    async def one_round(name: str) -> float:
        executions = 0

        async def slow() -> object:
            nonlocal executions
            executions += 1
            await asyncio.sleep(0)  # every caller has joined by the time this resumes
            return RESULT

        naive = NaiveSingleFlight()
        dedup = Deduplicator()
        cached = alru_cache(maxsize=16)(slow)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "naive Future dict": lambda: naive.run("key", slow),
            "async-lru alru_cache(maxsize=16)": cached,
            "botperf Deduplicator": lambda: dedup.run("key", slow),
        }
        call = calls[name]
        gc.collect()
        start = time.perf_counter_ns()
        results = await asyncio.gather(*(call() for _ in range(callers)))
        elapsed = time.perf_counter_ns() - start
        assert executions == 1, (name, executions)
        assert all(result is RESULT for result in results)
        return elapsed / 1e6

    async def main() -> dict[str, tuple[float, ...]]:
        names = ("naive Future dict", "async-lru alru_cache(maxsize=16)", "botperf Deduplicator")
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(repeat):
            for name in names:
                samples[name].append(await one_round(name))
        return {name: tuple(values) for name, values in samples.items()}

    return asyncio.run(main())


def memory_growth(keys: int) -> tuple[int, int]:
    """Bytes still allocated after ``keys`` sequential distinct keys, and the peak."""

    async def main() -> tuple[int, int]:
        dedup = Deduplicator()
        for key in range(1_000):  # warm up: first-use allocations are not growth
            await dedup.run(key, answer)
        gc.collect()
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for key in range(keys):
                await dedup.run(key, answer)
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert dedup.in_flight == 0
        return current - baseline, peak - baseline

    return asyncio.run(main())


def overhead_measurements(
    group: str, samples: dict[str, tuple[float, ...]], *, bare: str
) -> list[Measurement]:
    """Per-call time above the bare await, paired by repetition."""
    return [
        Measurement(
            group=group,
            implementation=name,
            unit="ns",
            samples=tuple(v - b for v, b in zip(values, samples[bare], strict=True)),
            params={"calls per sample": "distinct keys, all misses"},
        )
        for name, values in samples.items()
        if name != bare
    ]


def run(quick: bool) -> Report:
    number, repeat = (4_000, 5) if quick else (50_000, 9)
    keys = 100_000 if quick else 1_000_000
    report = Report(
        name="dedup: Deduplicator",
        charts=[
            ScalingChart(
                title="fan-out: ms until every caller has the result",
                group_prefix="fan-out:",
                x_param="callers",
                x_label="concurrent callers on one key (log scale)",
            )
        ],
    )

    asyncio_samples = overhead_on_asyncio(number, repeat)
    report.measurements.append(
        Measurement(
            group="per call on asyncio, distinct keys",
            implementation="bare await fn()",
            unit="ns",
            samples=asyncio_samples["bare await fn()"],
            baseline=True,
        )
    )
    overheads = overhead_measurements(
        "overhead above a bare await on asyncio, distinct keys",
        asyncio_samples,
        bare="bare await fn()",
    )
    # Ratios in this group are against async-lru, as the target is.
    overheads = [
        dataclasses.replace(m, baseline=m.implementation.startswith("async-lru")) for m in overheads
    ]
    report.measurements += overheads

    suspending = suspending_on_asyncio(number, repeat)
    suspending_group = "per call on asyncio, distinct keys, fn suspends once"
    report.measurements += [
        Measurement(
            group=suspending_group,
            implementation=name,
            unit="ns",
            samples=values,
            baseline=name == SUSPENDING_TASK,
        )
        for name, values in suspending.items()
    ]
    suspending_overheads = {
        m.implementation: m
        for m in overhead_measurements(
            "overhead above a bare await on asyncio, distinct keys, fn suspends once",
            suspending,
            bare=SUSPENDING_BARE,
        )
    }
    report.measurements += [
        dataclasses.replace(m, baseline=name == SUSPENDING_LRU)
        for name, m in suspending_overheads.items()
    ]

    trio_samples = overhead_on_trio(number, repeat)
    report.measurements += overhead_measurements(
        "overhead above a bare await on trio, distinct keys", trio_samples, bare="bare await fn()"
    )

    for callers in FAN_OUT_SIZES_QUICK if quick else FAN_OUT_SIZES:
        for name, values in fan_out(callers, repeat).items():
            report.measurements.append(
                Measurement(
                    group=f"fan-out: {callers:,} concurrent callers on one key (asyncio)",
                    implementation=name,
                    unit="ms",
                    samples=values,
                    baseline=name == "naive Future dict",
                    params={"callers": callers},
                )
            )

    growth, peak = memory_growth(keys)
    report.measurements.append(
        Measurement(
            group=f"memory after {keys:,} sequential distinct keys (tracemalloc)",
            implementation="botperf Deduplicator",
            unit="B",
            samples=(float(growth),),
        )
    )
    report.notes.append(f"tracemalloc peak during the {keys:,} keys: {peak:,} B above the start")

    by_name = {m.implementation: m for m in overheads}
    report.targets += [
        Target(
            description="overhead per call (distinct keys) vs async-lru's",
            measured=by_name["botperf Deduplicator"].median
            / by_name["async-lru alru_cache(maxsize=16)"].median,
            target=0.5,
            unit="x",
        ),
        Target(
            description="per call (distinct keys, fn suspends once) vs a bare "
            f"create_task + await, Python {sys.version_info.major}.{sys.version_info.minor}",
            measured=report.find(suspending_group, SUSPENDING_BOTPERF).median
            / report.find(suspending_group, SUSPENDING_TASK).median,
            target=1.2,
            unit="x",
        ),
        Target(
            description="overhead per call (distinct keys, fn suspends once) vs async-lru's",
            measured=suspending_overheads[SUSPENDING_BOTPERF].median
            / suspending_overheads[SUSPENDING_LRU].median,
            target=0.5,
            unit="x",
        ),
        Target(
            description=f"fan-out of {FAN_OUT:,} waiters vs the naive Future dict",
            measured=report.find(
                f"fan-out: {FAN_OUT:,} concurrent callers on one key (asyncio)",
                "botperf Deduplicator",
            ).median
            / report.find(
                f"fan-out: {FAN_OUT:,} concurrent callers on one key (asyncio)",
                "naive Future dict",
            ).median,
            target=1.2,
            unit="x",
        ),
        Target(
            description=f"memory growth after {keys:,} sequential distinct keys",
            measured=float(growth),
            target=64 * 1024,
            unit="B",
        ),
    ]
    return report
