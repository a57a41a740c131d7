"""What `botperf report` computes from a metrics file: counts, time span, timing values.

One pass over the file keeps only numbers, in compact arrays; the text tables
(`botperf._report_text`) and the HTML page (`botperf._report_html`) are drawn from it.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._reader import read_metrics

__all__ = [
    "PERCENTILES",
    "PLAUSIBLE_TS",
    "Event",
    "FieldStats",
    "Report",
    "Series",
    "Since",
    "field_stats",
    "field_unit",
    "load_report",
    "nearest_rank",
]

#: Percentiles the report shows, as (label, fraction); nearest-rank convention.
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))

#: The Unix times (seconds) the report takes as plausible: from 1970 to the last day
#: `datetime` can show. Milliseconds since 1970 and garbage fall outside.
PLAUSIBLE_TS = (0.0, 253402214400.0)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def field_unit(name: str) -> str | None:
    """Return the unit of a timing field (``"ms"`` or ``"s"``), ``None`` if not one."""
    if name.endswith("_ms"):
        return "ms"
    if name in ("seconds", "duration"):
        return "s"
    return None


@dataclass(frozen=True)
class Since:
    """A ``--since`` bound: an absolute Unix time, or seconds before the newest event."""

    text: str
    timestamp: float | None = None
    before_newest: float | None = None

    @classmethod
    def parse(cls, text: str) -> Since:
        """Parse ISO-8601 (UTC when no offset is given) or ``30s``/``10m``/``2h``/``1d``.

        Raises:
            ValueError: If ``text`` is neither.
        """
        match = _RELATIVE.match(text)
        if match:
            return cls(text, before_newest=float(match[1]) * _UNIT_SECONDS[match[2]])
        iso = text.strip()
        if iso.endswith(("Z", "z")):
            iso = iso[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither an ISO-8601 time (2024-11-24T10:30:00Z) "
                "nor a duration before the newest event (30s, 10m, 2h, 1d)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return cls(text, timestamp=moment.timestamp())

    def cutoff(self, newest: float) -> float:
        """Return the earliest Unix time kept, given the newest event's time."""
        if self.timestamp is not None:
            return self.timestamp
        return newest - (self.before_newest or 0.0)


def _floats() -> array[float]:
    return array("d")


@dataclass
class Series:
    """One timing field of one event name: (time, value) pairs in file order.

    A time is NaN for an event whose ``ts`` is no plausible Unix time.
    """

    unit: str
    times: array[float] = field(default_factory=_floats)
    values: array[float] = field(default_factory=_floats)


@dataclass
class Event:
    """Everything the report shows about one event name, kept in compact arrays."""

    name: str
    times: array[float] = field(default_factory=_floats)
    failed: array[int] = field(default_factory=lambda: array("b"))
    series: dict[str, Series] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.times)

    @property
    def errors(self) -> int:
        return sum(self.failed)

    def since(self, cutoff: float) -> Event:
        """Return the part of this event at or after ``cutoff`` (Unix seconds)."""
        kept = Event(self.name)
        for ts, failed in zip(self.times, self.failed, strict=True):
            if ts >= cutoff:
                kept.times.append(ts)
                kept.failed.append(failed)
        for key, series in self.series.items():
            kept_series = Series(series.unit)
            for ts, value in zip(series.times, series.values, strict=True):
                if ts >= cutoff:
                    kept_series.times.append(ts)
                    kept_series.values.append(value)
            if kept_series.times:
                kept.series[key] = kept_series
        return kept


@dataclass
class Report:
    """The events of a metrics file, by name, with the time span of those kept."""

    path: str
    events: list[Event]
    first: float | None
    last: float | None
    skipped: int
    since: Since | None
    untimed: int = 0

    @property
    def total(self) -> int:
        return sum(event.count for event in self.events)

    @property
    def span(self) -> float:
        """Seconds from the first to the last event kept (0.0 when none was)."""
        return (self.last or 0.0) - (self.first or 0.0)


@dataclass(frozen=True)
class FieldStats:
    """The exact percentiles of one timing field, as `PERCENTILES` lists them, and its max."""

    key: str
    unit: str
    count: int
    percentiles: tuple[float, ...]
    maximum: float


def nearest_rank(sorted_values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile: the value of rank ``ceil(fraction * n)``."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def field_stats(event: Event) -> list[FieldStats]:
    """Return the statistics of each timing field of ``event``, in the order first seen."""
    stats = []
    for key, series in event.series.items():
        ordered = sorted(series.values)
        percentiles = tuple(nearest_rank(ordered, fraction) for _, fraction in PERCENTILES)
        stats.append(FieldStats(key, series.unit, len(ordered), percentiles, ordered[-1]))
    return stats


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            return None
        if math.isfinite(number):
            return number
    return None


def _printable(text: str) -> str:
    """Return ``text`` with any lone surrogate (JSON allows them) as a backslash escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def load_report(path: str, since: Since | None, names: Sequence[str] | None) -> Report:
    """Read the metrics file at ``path`` into a `Report`, keeping only numbers.

    Args:
        path: The metrics file.
        since: Keep only events at or after this bound; ``None`` keeps all.
        names: Keep only these event names; ``None`` keeps all.

    Raises:
        FileNotFoundError: If there is no metrics file at ``path``.
        OSError: If it cannot be read; ``filename`` names it.
        FileFormatError: For a line `botperf.read_metrics` refuses, naming it.
    """
    # One pass, keeping only numbers: 8 bytes per event, 16 per timing value. A relative
    # --since needs the newest time, known only at the end, so filtering comes last.
    # An implausible ts is kept as NaN: such an event counts, but it is in no time span,
    # no chart over time, and never at or after a --since cutoff.
    wanted = None if names is None else set(names)
    every_ts = _floats()
    events: dict[str, Event] = {}
    skipped = untimed = 0
    earliest, latest = PLAUSIBLE_TS
    for fields in read_metrics(path):
        ts = _number(fields.get("ts"))
        name = fields.get("event")
        if ts is None or not isinstance(name, str):
            skipped += 1
            continue
        plausible = earliest <= ts < latest
        if plausible:
            every_ts.append(ts)
        if wanted is not None and name not in wanted:
            continue
        if not plausible:
            untimed += 1
            ts = math.nan
        event = events.get(name)
        if event is None:
            event = events[name] = Event(_printable(name))
        event.times.append(ts)
        event.failed.append(fields.get("error") is True)
        for key, raw in fields.items():
            unit = field_unit(key)
            value = _number(raw)
            if unit is None or value is None:
                continue
            series = event.series.get(key)
            if series is None:
                series = event.series[key] = Series(unit)
            series.times.append(ts)
            series.values.append(value)
    first = last = None
    ordered = [events[name] for name in sorted(events)]
    for event in ordered:
        event.series = {_printable(key): series for key, series in event.series.items()}
    if every_ts:
        cutoff = since.cutoff(max(every_ts)) if since else -math.inf
        kept_ts = [ts for ts in every_ts if ts >= cutoff]
        if kept_ts:
            first, last = min(kept_ts), max(kept_ts)
        if since:
            ordered = [kept for kept in (e.since(cutoff) for e in ordered) if kept.count]
    return Report(_printable(path), ordered, first, last, skipped, since, untimed)
