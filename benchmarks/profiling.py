"""What ``timed`` costs on every call, and what ``LatencyRecorder.observe`` costs.

Each timed variant runs an empty function, so the difference to the bare call is the
whole overhead: two ``perf_counter()`` reads, the wrapper and the recording. The
hand-written ``perf_counter()`` pair that observes into a recorder is the floor that a
careful user would write without botperf.
"""

from __future__ import annotations

import random
from time import perf_counter

import anyio

from botperf import LatencyRecorder, timed

from ._harness import Measurement, Report, Target, async_ns_per_op, ns_per_op

TARGET_NS = 1_000.0  # the issue: under 1 µs of overhead per call


def _work() -> None:
    return None


async def _async_work() -> None:
    return None


SYNC_GROUP = "sync call, empty function (ns per call)"
ASYNC_GROUP = "async call, empty coroutine, asyncio (ns per call)"


def _sync_group(number: int, repeat: int) -> list[Measurement]:
    recorder = LatencyRecorder()
    observe = recorder.observe

    def hand_written() -> None:
        start = perf_counter()
        _work()
        observe("hand", perf_counter() - start)

    decorated = timed("decorated", recorder=recorder)(_work)
    reused = timed("reused", recorder=recorder)

    def with_new_object() -> None:
        with timed("with", recorder=recorder):
            _work()

    def with_reused_object() -> None:
        with reused:
            _work()

    group = SYNC_GROUP
    variants = [
        ("bare call", _work, True),
        ("hand-written perf_counter pair + observe", hand_written, False),
        ("@timed decorator", decorated, False),
        ("with timed(...) (new object per block)", with_new_object, False),
        ("with t (one timed object reused)", with_reused_object, False),
    ]
    return [
        Measurement(group, name, "ns", ns_per_op(op, number=number, repeat=repeat), baseline=base)
        for name, op, base in variants
    ]


def _async_group(number: int, repeat: int) -> list[Measurement]:
    recorder = LatencyRecorder()
    observe = recorder.observe
    decorated = timed("decorated", recorder=recorder)(_async_work)

    async def hand_written() -> None:
        start = perf_counter()
        await _async_work()
        observe("hand", perf_counter() - start)

    async def async_with() -> None:
        async with timed("async with", recorder=recorder):
            await _async_work()

    group = ASYNC_GROUP
    variants = [
        ("bare await", _async_work, True),
        ("hand-written perf_counter pair + observe", hand_written, False),
        ("@timed decorator", decorated, False),
        ("async with timed(...)", async_with, False),
    ]
    measurements: list[Measurement] = []

    async def main() -> None:
        for name, op, base in variants:
            samples = await async_ns_per_op(op, number=number, repeat=repeat)
            measurements.append(Measurement(group, name, "ns", samples, baseline=base))

    anyio.run(main, backend="asyncio")
    return measurements


def _observe_group(number: int, repeat: int) -> list[Measurement]:
    rng = random.Random(6)
    values = [rng.lognormvariate(-3.0, 1.5) for _ in range(1_000)]
    recorder = LatencyRecorder()
    observe = recorder.observe
    kept: list[float] = []
    append = kept.append

    def observe_batch() -> None:
        for value in values:
            observe("op", value)

    def append_batch() -> None:
        for value in values:
            append(value)
        kept.clear()

    group = "recording one duration (ns per duration)"
    per_batch = len(values)
    batches = max(1, number // per_batch)
    variants = [
        ("list.append (exact, unbounded memory)", append_batch, True),
        ("LatencyRecorder.observe", observe_batch, False),
    ]
    return [
        Measurement(
            group,
            name,
            "ns",
            tuple(s / per_batch for s in ns_per_op(op, number=batches, repeat=repeat)),
            baseline=base,
        )
        for name, op, base in variants
    ]


def run(quick: bool) -> Report:
    number, repeat = (20_000, 5) if quick else (200_000, 9)
    report = Report("profiling: timed() overhead and LatencyRecorder.observe")
    report.measurements += _sync_group(number, repeat)
    report.measurements += _async_group(number, repeat)
    report.measurements += _observe_group(number, repeat)

    sync_bare = report.find(SYNC_GROUP, "bare call").median
    for implementation in ("@timed decorator", "with timed(...) (new object per block)"):
        measured = report.find(SYNC_GROUP, implementation).median
        report.targets.append(
            Target(
                f"{implementation} overhead over a bare call",
                measured - sync_bare,
                TARGET_NS,
                "ns",
            )
        )
    async_bare = report.find(ASYNC_GROUP, "bare await").median
    for implementation in ("@timed decorator", "async with timed(...)"):
        measured = report.find(ASYNC_GROUP, implementation).median
        report.targets.append(
            Target(
                f"async {implementation} overhead over a bare await",
                measured - async_bare,
                TARGET_NS,
                "ns",
            )
        )
    report.notes.append(
        "overhead = median of the timed variant minus median of the bare call, same process"
    )
    return report
