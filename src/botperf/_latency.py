"""Latency percentiles per name in bounded memory: a log-bucketed sketch (like DDSketch)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from math import ceil, log
from typing import final

from ._exceptions import BotperfValueError, InvalidOptionError

__all__ = ["LatencyRecorder", "LatencyStats"]

#: Durations below this many seconds (1 ns, finer than any clock Python reads) share
#: one zero bucket: a percentile that falls in it reports 0.0.
ZERO_THRESHOLD = 1e-9

_INFINITY = math.inf

# The key of the zero bucket: below every log bucket's key, so it sorts first.
_ZERO_KEY = -(2**62)

# Computing a bucket's representative takes exp() of a large multiple of log(gamma),
# which is rounded; aiming a hair inside the promised accuracy keeps the promise exact.
_ROUNDING_MARGIN = 1e-6


@final
@dataclass(frozen=True, slots=True)
class LatencyStats:
    """A snapshot of the durations recorded under one name, all in seconds.

    ``count``, ``errors``, ``total``, ``mean`` and ``max`` are exact. The percentiles use the
    nearest-rank convention (``p90`` is the sample of rank ``ceil(0.9 * count)`` in
    sorted order), and each is within the recorder's relative accuracy (1 % by default)
    of that exact sample.

    Attributes:
        count: Durations recorded, failed ones included.
        errors: How many of them were recorded with ``error=True`` (a timed block raised).
        mean: Their arithmetic mean, in seconds.
        p50: The median, in seconds.
        p90: The 90th percentile, in seconds.
        p99: The 99th percentile, in seconds.
        max: The longest, in seconds.
        total: Their sum, in seconds, read in the same snapshot as ``count`` (what a
            Prometheus summary's ``_sum`` needs: ``mean * count`` can be off by a rounding).
    """

    count: int
    errors: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float
    total: float


class _Sketch:
    """The durations of one name: exact sum, max and error count, and the log buckets.

    The count is the sum of the bucket counts, so recording touches as little as it can.
    """

    __slots__ = ("buckets", "errors", "maximum", "total")

    def __init__(self) -> None:
        self.errors = 0
        self.total = 0.0
        self.maximum = 0.0
        self.buckets: dict[int, int] = {}

    def merge(self, other: _Sketch) -> None:
        self.errors += other.errors
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)
        for key, count in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + count

    def copy(self) -> _Sketch:
        clone = _Sketch()
        clone.merge(self)
        return clone


@final
class LatencyRecorder:
    """Per-name latency percentiles in memory that does not grow with the observations.

    Each name keeps an exact count, error count, sum and max, plus a histogram of
    logarithmic buckets: bucket ``i`` counts the durations in
    ``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + a) / (1 - a)`` for relative accuracy
    ``a``. A percentile is answered by the bucket holding the sample of that rank, and
    the bucket's midpoint (in the relative sense) is within ``a`` of every value in it,
    so every reported percentile is within ``a`` of the exact one: the DDSketch idea.

    Memory per name is one dict entry per bucket in use, at most
    ``ln(longest / shortest) / ln(gamma)`` of them whatever the number of observations:
    about 1,600 buckets at 1 % for durations anywhere from 1 ns to a day, and about 920
    for 1 µs to 100 s. Durations under 1 ns share one zero bucket, and a percentile
    that falls in it reports 0.0.

    Recording is O(1) and thread-safe (a lock guards each observation); use one recorder
    from any number of tasks and threads. Recorders with the same accuracy merge
    exactly: merging is the same as having observed every sample in one recorder.

    Args:
        relative_accuracy: The promised relative error of every percentile, strictly
            between 0 and 1 (default 0.01, i.e. 1 %). Smaller costs more buckets:
            about ``1 / (2 * relative_accuracy)`` per factor of e in range.

    Raises:
        InvalidOptionError: If ``relative_accuracy`` is not a number strictly between 0
            and 1 (also a ``ValueError`` and a ``TypeError``).

    Example:
        >>> recorder = LatencyRecorder()
        >>> recorder.observe("cache.get", 0.0003)
        >>> recorder.summary()["cache.get"].count
        1
    """

    def __init__(self, *, relative_accuracy: float = 0.01) -> None:
        self._relative_accuracy = _check_accuracy(relative_accuracy)
        accuracy = relative_accuracy * (1.0 - _ROUNDING_MARGIN)
        gamma = (1.0 + accuracy) / (1.0 - accuracy)
        self._gamma = gamma
        self._log_gamma = math.log(gamma)
        self._inverse_log_gamma = 1.0 / self._log_gamma
        self._sketches: dict[str, _Sketch] = {}
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> LatencyRecorder:
        """Return the process-wide recorder that `timed` uses by default.

        It has the default accuracy and lives as long as the process; the same object
        every time.
        """
        return _DEFAULT_RECORDER

    @property
    def relative_accuracy(self) -> float:
        """The promised relative error of every percentile (0.01 means 1 %)."""
        return self._relative_accuracy

    @property
    def bucket_count(self) -> int:
        """How many histogram buckets all names use together: the recorder's memory.

        It depends on the spread of the durations seen, never on how many there were.
        The zero bucket counts once per name that used it.
        """
        with self._lock:
            return sum(len(sketch.buckets) for sketch in self._sketches.values())

    def observe(self, name: str, seconds: float, *, error: bool = False) -> None:
        """Record one duration under ``name``. O(1): a logarithm, a lock and a dict update.

        Args:
            name: What was timed, e.g. ``"ollama.chat"``.
            seconds: How long it took, in seconds.
            error: Whether it failed (counted in `LatencyStats.errors`); the
                duration counts in the percentiles either way.

        Raises:
            ValueError: If ``seconds`` is negative, NaN or infinite (also a
                ``ValueError``); nothing is recorded.
        """
        # Chained comparisons against module constants: NaN, infinity and negatives fail
        # both tests. acquire()/release() rather than `with`: one context-manager
        # protocol call less on CPython 3.11, and observe() runs on every timing.
        if ZERO_THRESHOLD <= seconds < _INFINITY:
            key = ceil(log(seconds) * self._inverse_log_gamma)
        elif 0.0 <= seconds < ZERO_THRESHOLD:
            key = _ZERO_KEY
        else:
            raise BotperfValueError(
                f"cannot record {seconds!r} seconds for {name!r}: a duration must be a finite "
                "number >= 0; measure with time.perf_counter() differences",
                name=name,
                seconds=seconds,
            )
        lock = self._lock
        lock.acquire()
        try:
            try:
                sketch = self._sketches[name]
            except KeyError:  # once per name; a subscript is cheaper than .get() after that
                sketch = self._sketches[name] = _Sketch()
            sketch.total += seconds
            if seconds > sketch.maximum:
                sketch.maximum = seconds
            if error:
                sketch.errors += 1
            buckets = sketch.buckets
            buckets[key] = buckets.get(key, 0) + 1
        finally:
            lock.release()

    def summary(self) -> dict[str, LatencyStats]:
        """Return a `LatencyStats` snapshot per name, sorted by name.

        Costs O(buckets) per name; the recorder keeps recording meanwhile.
        """
        with self._lock:
            sketches = {name: sketch.copy() for name, sketch in self._sketches.items()}
        return {name: self._stats(sketches[name]) for name in sorted(sketches)}

    def _stats(self, sketch: _Sketch) -> LatencyStats:
        count = sum(sketch.buckets.values())
        p50, p90, p99 = self._percentiles(sketch, count, (0.5, 0.9, 0.99))
        return LatencyStats(
            count=count,
            errors=sketch.errors,
            mean=sketch.total / count,
            p50=p50,
            p90=p90,
            p99=p99,
            max=sketch.maximum,
            total=sketch.total,
        )

    def _percentiles(
        self, sketch: _Sketch, count: int, quantiles: tuple[float, ...]
    ) -> list[float]:
        ranks = [max(1, ceil(q * count)) for q in quantiles]
        values: list[float] = []
        seen = 0
        keys = iter(sorted(sketch.buckets))
        key = _ZERO_KEY
        for rank in ranks:
            while seen < rank:
                key = next(keys)
                seen += sketch.buckets[key]
            if key == _ZERO_KEY:
                values.append(0.0)
            else:
                value = 2.0 * math.exp(key * self._log_gamma) / (self._gamma + 1.0)
                # Only the top bucket can overshoot the max; clamping moves toward the sample.
                values.append(min(value, sketch.maximum))
        return values

    def merge(self, other: LatencyRecorder) -> None:
        """Add everything ``other`` recorded into this recorder, name by name.

        The result equals having observed both recorders' samples in this one.
        ``other`` is left unchanged.

        Raises:
            ValueError: If the recorders' relative accuracies differ
                (also a ``ValueError``); nothing is merged.
        """
        if other._relative_accuracy != self._relative_accuracy:
            raise BotperfValueError(
                f"cannot merge a LatencyRecorder with relative_accuracy="
                f"{other._relative_accuracy!r} into one with relative_accuracy="
                f"{self._relative_accuracy!r}: their buckets differ; build both recorders "
                "with the same relative_accuracy",
                accuracy=self._relative_accuracy,
                other_accuracy=other._relative_accuracy,
            )
        with other._lock:
            incoming = {name: sketch.copy() for name, sketch in other._sketches.items()}
        with self._lock:
            for name, sketch in incoming.items():
                mine = self._sketches.get(name)
                if mine is None:
                    self._sketches[name] = sketch
                else:
                    mine.merge(sketch)

    def __or__(self, other: object) -> LatencyRecorder:
        """Return a new recorder holding both recorders' samples (see `merge`)."""
        if not isinstance(other, LatencyRecorder):
            return NotImplemented
        combined = LatencyRecorder(relative_accuracy=self._relative_accuracy)
        combined.merge(self)
        combined.merge(other)
        return combined

    def clear(self) -> None:
        """Forget every name and duration, e.g. after reporting one interval's summary."""
        with self._lock:
            self._sketches.clear()

    def __repr__(self) -> str:
        with self._lock:
            names = len(self._sketches)
        return f"LatencyRecorder(relative_accuracy={self._relative_accuracy!r}, names={names})"


def _check_accuracy(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 < value < 1.0  # NaN fails this too
    ):
        raise InvalidOptionError(
            "LatencyRecorder",
            "relative_accuracy",
            value,
            "a number strictly between 0 and 1 (0.01 means 1 %)",
        )
    return float(value)


_DEFAULT_RECORDER = LatencyRecorder()
