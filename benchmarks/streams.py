"""Shared streams: chunk fan-out to 1, 10, 100 and 1,000 consumers.

Each consumer iterates a stream of ``CHUNKS`` chunks to its end, all of them at once:

* "botperf shared stream": every consumer iterates ``Deduplicator.stream()`` with
  one key, so one upstream iteration feeds them all through the shared buffer;
* "own upstream each": every consumer iterates an upstream of its own, which is
  what happens without deduplication (one LLM call per caller).

The upstream is an async generator that suspends once per chunk (``sleep(0)``, as
a network read would) and costs nothing else, so the comparison is the fan-out's
overhead against the cheapest possible upstream: a real LLM call per consumer would
cost far more than these per-chunk turns of the event loop. Throughput is chunks
delivered to consumers per second of wall time (consumers x chunks / time);
upstream iterations are counted. Both run on asyncio and on trio.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.lowlevel

from botperf import Deduplicator

from ._harness import Measurement, Report, ScalingChart, Target, tick

CONSUMERS = (1, 10, 100, 1_000)
SHARED = "botperf shared stream"
OWN = "own upstream each"


def one_round(backend: str, implementation: str, consumers: int, chunks: int) -> tuple[float, int]:
    """Wall seconds for ``consumers`` to each read ``chunks`` chunks, and upstream iterations."""

    async def main() -> tuple[float, int]:
        iterations = 0
        delivered = 0

        async def upstream() -> AsyncIterator[int]:
            nonlocal iterations
            iterations += 1
            for index in range(chunks):
                await anyio.lowlevel.checkpoint()
                yield index

        dedup = Deduplicator()
        open_stream: Callable[[], AsyncIterator[int]] = (
            (lambda: dedup.stream("reply", upstream)) if implementation == SHARED else upstream
        )

        async def consume() -> None:
            nonlocal delivered
            count = 0
            async for _ in open_stream():
                count += 1
            delivered += count

        gc.collect()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(consumers):
                tg.start_soon(consume)
        elapsed = time.perf_counter() - start
        assert delivered == consumers * chunks, (implementation, delivered)
        assert dedup.in_flight == 0
        return elapsed, iterations

    result: tuple[float, int] = anyio.run(main, backend=backend)
    return result


def fan_out(backend: str, chunks: int, repeat: int) -> list[Measurement]:
    measurements = []
    for consumers in CONSUMERS:
        samples: dict[str, list[float]] = {SHARED: [], OWN: []}
        iterations: dict[str, int] = {}
        # Interleave the repetitions so a noisy neighbour hurts both alike.
        for _ in range(repeat):
            for implementation in (OWN, SHARED):
                seconds, iterations[implementation] = one_round(
                    backend, implementation, consumers, chunks
                )
                samples[implementation].append(consumers * chunks / seconds)
                tick()
        measurements += [
            Measurement(
                group=f"fan-out on {backend}: {consumers:,} consumers x {chunks} chunks",
                implementation=implementation,
                unit="chunks/s",
                samples=tuple(values),
                baseline=implementation == OWN,
                higher_is_better=True,
                params={"consumers": consumers, "upstream iterations": iterations[implementation]},
            )
            for implementation, values in samples.items()
        ]
    return measurements


def run(quick: bool) -> Report:
    chunks, repeat = (100, 3) if quick else (500, 9)
    report = Report(name="streams: shared streams")
    for backend in ("asyncio", "trio"):
        report.measurements += fan_out(backend, chunks, repeat)
        report.charts.append(
            ScalingChart(
                title=f"Chunk fan-out throughput on {backend} ({chunks} chunks per stream)",
                group_prefix=f"fan-out on {backend}",
                x_param="consumers",
                x_label="concurrent consumers",
            )
        )
    for backend in ("asyncio", "trio"):
        counts = {
            implementation: ", ".join(
                f"{m.params['upstream iterations']:,}"
                for m in report.measurements
                if m.group.startswith(f"fan-out on {backend}")
                and m.implementation == implementation
            )
            for implementation in (SHARED, OWN)
        }
        report.notes.append(
            f"upstream iterations on {backend} for {', '.join(map(str, CONSUMERS))} consumers: "
            f"{SHARED} {counts[SHARED]}; {OWN} {counts[OWN]}"
        )
    for backend in ("asyncio", "trio"):
        for consumers, target in ((1, 0.9), (10, 1.5), (100, 1.5)):
            group = f"fan-out on {backend}: {consumers:,} consumers x {chunks} chunks"
            report.targets.append(
                Target(
                    description=f"{SHARED} / {OWN}, {consumers:,} consumer"
                    f"{'s' if consumers > 1 else ''} ({backend})",
                    measured=report.find(group, SHARED).median / report.find(group, OWN).median,
                    target=target,
                    unit="x",
                    higher_is_better=True,
                )
            )
    most = max(CONSUMERS)
    report.targets += [
        Target(
            description=f"upstream iterations for {most:,} consumers of one shared stream "
            f"({backend})",
            measured=float(
                report.find(
                    f"fan-out on {backend}: {most:,} consumers x {chunks} chunks", SHARED
                ).params["upstream iterations"]
            ),
            target=1,
            unit="",
        )
        for backend in ("asyncio", "trio")
    ]
    return report
