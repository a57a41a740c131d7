"""What every benchmark module shares: timing loops, results, targets and the table.

A benchmark module exposes ``run(quick: bool) -> Report``. It measures each
implementation side by side in the same process, several repetitions each, and
returns one :class:`Measurement` per (group, implementation) plus the
:class:`Target` checks the issues state. Benchmarks never assert: a missed target is
printed as missed.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """One implementation's repeated samples in one benchmark group."""

    group: str
    implementation: str
    unit: str
    samples: tuple[float, ...]
    baseline: bool = False
    higher_is_better: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def maximum(self) -> float:
        return max(self.samples)


@dataclass(frozen=True)
class Target:
    """A target stated in an issue, and what this run measured against it."""

    description: str
    measured: float
    target: float
    unit: str
    higher_is_better: bool = False

    @property
    def holds(self) -> bool:
        if self.higher_is_better:
            return self.measured >= self.target
        return self.measured <= self.target


@dataclass(frozen=True)
class ScalingChart:
    """A line chart of medians against a parameter, one line per implementation.

    It plots every measurement whose group starts with ``group_prefix`` and whose
    ``params`` hold ``x_param``, so O(1) and O(n) can be seen, not just claimed.
    """

    title: str
    group_prefix: str
    x_param: str
    x_label: str
    log_y: bool = True


@dataclass
class Report:
    """What one benchmark module returns."""

    name: str
    measurements: list[Measurement] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    charts: list[ScalingChart] = field(default_factory=list)

    def find(self, group: str, implementation: str) -> Measurement:
        for measurement in self.measurements:
            if measurement.group == group and measurement.implementation == implementation:
                return measurement
        raise KeyError((group, implementation))


def _no_progress() -> None:
    return None


_progress: Callable[[], None] = _no_progress


def set_progress(tick: Callable[[], None]) -> None:
    """Install the function the timing loops call after each repetition (the runner's ticker)."""
    global _progress
    _progress = tick


def tick() -> None:
    """Tell the progress display that one more repetition finished."""
    _progress()


def ns_per_op(operation: Callable[[], object], *, number: int, repeat: int) -> tuple[float, ...]:
    """Time ``number`` calls of ``operation``, ``repeat`` times; ns per call for each repeat.

    The garbage collector is paused during each timed loop, as :mod:`timeit` does.
    """
    samples = []
    for _ in range(repeat):
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in range(number):
                operation()
            elapsed = time.perf_counter_ns() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        samples.append(elapsed / number)
        tick()
    return tuple(samples)


async def async_ns_per_op(
    operation: Callable[[], Awaitable[object]], *, number: int, repeat: int
) -> tuple[float, ...]:
    """Like :func:`ns_per_op` for a coroutine function, awaited in the running loop."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            await operation()
        samples.append((time.perf_counter_ns() - start) / number)
        tick()
    return tuple(samples)


def format_value(value: float, unit: str) -> str:
    if value >= 100_000:
        return f"{value:,.0f} {unit}"
    if value >= 100:
        return f"{value:,.1f} {unit}"
    return f"{value:.3g} {unit}"


def print_report(report: Report) -> None:
    """Print the report's groups as tables (median, min, max, ratio to baseline) and targets."""
    print(f"\n## {report.name}")
    groups: dict[str, list[Measurement]] = {}
    for measurement in report.measurements:
        groups.setdefault(measurement.group, []).append(measurement)
    for group, measurements in groups.items():
        baseline = next((m for m in measurements if m.baseline), None)
        print(f"\n{group}")
        width = max(len(m.implementation) for m in measurements)
        for m in measurements:
            ratio = ""
            if baseline is not None and baseline.median > 0:
                ratio = f"  {m.median / baseline.median:6.2f}x {baseline.implementation}"
            print(
                f"  {m.implementation:<{width}}  median {format_value(m.median, m.unit):>16}"
                f"  min {format_value(m.minimum, m.unit):>16}"
                f"  max {format_value(m.maximum, m.unit):>16}{ratio}"
            )
    if report.targets:
        print("\nTargets (measured / target)")
        for target in report.targets:
            verdict = "holds " if target.holds else "MISSED"
            sign = ">=" if target.higher_is_better else "<="
            print(
                f"  [{verdict}] {target.description}: "
                f"{format_value(target.measured, target.unit)} / {sign} "
                f"{format_value(target.target, target.unit)}"
            )
    for note in report.notes:
        print(f"  note: {note}")
