"""What the exporters export: one table entry per statistics type, shared by both.

`botperf.prometheus` and `botperf.otel` read the same table, so a figure has one
description, one kind and one unit whatever the ecosystem. The table is keyed by the
name of the stats dataclass rather than by the class, so an entry can be written for a
primitive before its module exists (the limiters): `exported_kind` then checks that the
dataclass's fields are exactly the ones the entry names, and refuses an object whose
stats have changed shape instead of exporting half of them. Keeping the table here,
not as field metadata on each dataclass, leaves the stats classes free of any exporter
concern and puts every exported name on one page (the docs' metric table mirrors it).

Nothing here imports prometheus_client or OpenTelemetry.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, final

from ._exceptions import BotperfTypeError, BotperfValueError
from ._latency import LatencyRecorder

__all__ = [
    "EXPORTED",
    "LATENCY",
    "Exported",
    "Figure",
    "ObjectRegistry",
    "check_object_name",
    "exported_kind",
]

#: A counter only grows (Prometheus `_total`, an OpenTelemetry observable counter); a
#: gauge is a size read now (a Prometheus gauge, an OpenTelemetry up-down counter).
FigureKind = Literal["counter", "gauge"]


@final
@dataclass(frozen=True, slots=True)
class Figure:
    """One exported figure: a field of the stats snapshot, or a property of the object."""

    attribute: str
    kind: FigureKind
    #: The OpenTelemetry (UCUM) unit: an annotation such as ``{call}`` for a count.
    unit: str
    description: str
    #: Read from the object itself (e.g. ``Deduplicator.in_flight``), not from its stats.
    on_object: bool = False


@final
@dataclass(frozen=True, slots=True)
class Exported:
    """How one statistics type is exported: the metric prefix and its figures."""

    subsystem: str
    figures: tuple[Figure, ...]

    @property
    def stats_fields(self) -> frozenset[str]:
        return frozenset(f.attribute for f in self.figures if not f.on_object)


def _counter(attribute: str, unit: str, description: str) -> Figure:
    return Figure(attribute, "counter", unit, description)


def _gauge(attribute: str, unit: str, description: str, *, on_object: bool = False) -> Figure:
    return Figure(attribute, "gauge", unit, description, on_object)


#: Keyed by the stats dataclass's ``__name__``; adding a primitive is one entry.
EXPORTED: dict[str, Exported] = {
    "DedupStats": Exported(
        "dedup",
        (
            _counter("calls", "{call}", "Calls of the Deduplicator, and streams started."),
            _counter("executions", "{call}", "Calls that started a new execution."),
            _counter("shared", "{call}", "Calls that joined an execution already running."),
            _counter("cache_hits", "{call}", "Calls answered from the ttl cache."),
            _counter("errors", "{execution}", "Executions whose outcome was an exception."),
            _gauge(
                "in_flight", "{key}", "Keys with an execution or stream running.", on_object=True
            ),
        ),
    ),
    "HistoryStats": Exported(
        "history",
        (
            _counter("hits", "{read}", "Reads of a channel the store held."),
            _counter("misses", "{read}", "Reads of a channel the store did not hold."),
            _counter("evictions", "{channel}", "Channels dropped to stay within max_channels."),
            _counter("evict_errors", "{call}", "Calls of the on_evict callback that raised."),
            _counter("over_budget", "{prompt}", "Prompts returned over max_tokens."),
            _gauge("channels", "{channel}", "Channels held now."),
            _gauge("messages", "{message}", "Messages held now, over all channels."),
            _counter("trim_errors", "{call}", "Calls of the on_trim callback that raised."),
        ),
    ),
    "WriterStats": Exported(
        "writer",
        (
            _counter("recorded", "{event}", "Events recorded, including any later dropped."),
            _counter("written", "{event}", "Events the sink has taken."),
            _counter("batches", "{batch}", "Successful batch writes."),
            _counter("dropped", "{event}", "Events dropped because the buffer was full."),
            _counter("failed_writes", "{batch}", "Batch writes that raised (kept and retried)."),
            _gauge("waiting", "{event}", "Events recorded and not yet written."),
            _counter("unwritten", "{event}", "Events the sink never took, saved beside it."),
            _counter("repr_values", "{value}", "Field values written as their repr()."),
        ),
    ),
    "RateLimiterStats": Exported(
        "rate_limiter",
        (
            _counter("admitted", "{request}", "Requests the rate limiter let through."),
            _counter("limited", "{request}", "Requests the rate limiter refused."),
            _gauge("keys", "{key}", "Keys the rate limiter tracks now."),
        ),
    ),
    "FairLimiterStats": Exported(
        "fair_limiter",
        (
            _gauge("in_use", "{slot}", "Slots held now."),
            _gauge("waiting", "{request}", "Requests waiting for a slot now."),
            _counter("admitted", "{request}", "Requests given a slot."),
            _counter("rejected", "{request}", "Requests refused a slot."),
        ),
    ),
}

#: The figures of a `LatencyRecorder`, per timed name; exported by each exporter in its
#: own form (a Prometheus summary; OpenTelemetry counters and gauges).
LATENCY = "latency"

#: The quantiles of `LatencyStats`, as the attribute that holds each one.
QUANTILES: tuple[tuple[float, str], ...] = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))


def _is_dataclass_instance(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def exported_kind(obj: object) -> str:
    """Return the table key of ``obj`` (a stats type's name), or `LATENCY` for a recorder.

    Raises:
        TypeError: If ``obj`` is neither a `LatencyRecorder` nor an object whose
            ``stats`` is a snapshot listed in the table, with the fields listed there.
    """
    if isinstance(obj, LatencyRecorder):
        return LATENCY
    supported = ", ".join(["LatencyRecorder", *(f"objects with {k}" for k in EXPORTED)])
    try:
        stats = obj.stats  # type: ignore[attr-defined]
    except AttributeError:
        raise BotperfTypeError(
            f"cannot export {type(obj).__name__} objects: they have no stats; "
            f"botperf exports {supported}"
        ) from None
    name = type(stats).__name__
    entry = EXPORTED.get(name)
    if entry is None or not _is_dataclass_instance(stats):
        hint = ""
        if callable(stats):
            hint = (
                " (their stats are read with await, e.g. the botperf.redis classes: "
                "keep the last snapshot in an object's stats attribute, see the Monitoring docs)"
            )
        raise BotperfTypeError(
            f"cannot export {type(obj).__name__} objects{hint}; botperf exports {supported}"
        )
    fields = frozenset(f.name for f in dataclasses.fields(stats))
    if fields != entry.stats_fields:
        raise BotperfTypeError(
            f"cannot export {type(obj).__name__}: its {name} has the fields "
            f"{sorted(fields)} where the exporters know {sorted(entry.stats_fields)}; "
            "the table in botperf._export needs updating"
        )
    missing = [f.attribute for f in entry.figures if f.on_object and not hasattr(obj, f.attribute)]
    if missing:
        raise BotperfTypeError(
            f"cannot export {type(obj).__name__}: it lacks {', '.join(missing)}, "
            f"which botperf exports for {name}"
        )
    return name


def check_object_name(name: object) -> str:
    """Return ``name`` if it can be a label value (the ``name`` label of every sample).

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If it is empty or holds a control character, a line break or a
            character that is not valid Unicode text (a lone surrogate).
    """
    if not isinstance(name, str):
        raise BotperfTypeError(f"the name must be a str, got {type(name).__name__}: {name!r}")
    if not name or not name.isprintable():
        raise BotperfValueError(
            f"the name {name!r} cannot be a metric label value: use a non-empty name "
            "of printable characters (no line breaks or control characters)"
        )
    return name


@final
class ObjectRegistry:
    """The objects added to one exporter, by kind then name, in the order added.

    One name per kind: two objects of a kind under one name would export the same
    series twice. The same object twice would count its figures twice in every sum.
    A lock guards the tables: exporters read them from the thread that serves a scrape.
    """

    __slots__ = ("_by_kind", "_ids", "_lock")

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, object]] = {}
        self._ids: dict[int, str] = {}
        self._lock = threading.Lock()

    def add(self, name: object, obj: object) -> str:
        """Add ``obj`` under ``name`` and return its kind.

        Raises:
            TypeError: If ``obj`` cannot be exported or ``name`` is not a string.
            ValueError: If ``name`` is not a valid label value, is taken by an object of
                the same kind, or ``obj`` was added already.
        """
        checked = check_object_name(name)
        kind = exported_kind(obj)
        with self._lock:
            named = self._by_kind.setdefault(kind, {})
            if checked in named:
                raise BotperfValueError(
                    f"the name {checked!r} is taken by another {type(named[checked]).__name__}; "
                    "give each object of a kind its own name"
                )
            # The object stays referenced by _by_kind, so its id() is not reused meanwhile.
            if id(obj) in self._ids:
                raise BotperfValueError(
                    f"this {type(obj).__name__} was added already as {self._ids[id(obj)]!r}; "
                    "an object is exported once"
                )
            named[checked] = obj
            self._ids[id(obj)] = checked
        return kind

    def items(self, kind: str) -> list[tuple[str, object]]:
        """The ``(name, object)`` pairs of ``kind``, in the order they were added."""
        with self._lock:
            return list(self._by_kind.get(kind, {}).items())

    def kinds(self) -> Iterator[str]:
        """The kinds with at least one object, in the table's order, latency last."""
        with self._lock:
            present = [kind for kind in (*EXPORTED, LATENCY) if self._by_kind.get(kind)]
        return iter(present)
