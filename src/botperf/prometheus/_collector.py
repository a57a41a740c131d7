"""`BotperfCollector`: botperf's counters as a prometheus_client custom collector."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import final

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from .._exceptions import InvalidOptionError
from .._export import EXPORTED, LATENCY, QUANTILES, Exported, Figure, ObjectRegistry
from .._latency import LatencyRecorder

__all__ = ["BotperfCollector"]

# Metric names may also hold colons, which Prometheus reserves for recording rules.
_NAMESPACE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_LATENCY_DOC = "Durations timed under each name (quantiles within the recorder's accuracy)."
_ERRORS_DOC = "Timings whose function or block raised."
_MAX_DOC = "The longest duration timed under each name."


def _check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or (namespace and not _NAMESPACE.fullmatch(namespace)):
        raise InvalidOptionError(
            "BotperfCollector",
            "namespace",
            namespace,
            "letters, digits and underscores not starting with a digit, or '' for none",
        )
    return namespace


@final
class BotperfCollector(Collector):
    """Exports botperf objects to Prometheus, read from their ``stats`` at each scrape.

    Add each object under a name, which becomes the ``name`` label of its samples, then
    register the collector in a prometheus_client registry. Counters are exported as
    ``<namespace>_<subsystem>_<field>_total`` (``mybot_dedup_executions_total``), sizes
    as gauges (``mybot_history_channels``), and a `botperf.LatencyRecorder` as the
    summary ``<namespace>_latency_seconds`` with a ``timer`` label per timed name, the
    quantiles 0.5, 0.9 and 0.99, ``_count`` and ``_sum``. A scrape reads each
    object's ``stats`` once: O(objects + timed names), with no background task and
    nothing copied between scrapes. See the Monitoring page for every metric name.

    Args:
        namespace: The prefix of every metric name (letters, digits and underscores,
            not starting with a digit), or ``""`` for none.

    Raises:
        InvalidOptionError: If ``namespace`` is not a valid metric name prefix.

    Example:
        >>> from botperf import Deduplicator
        >>> collector = BotperfCollector(namespace="mybot")
        >>> collector.add("llm", Deduplicator())
    """

    def __init__(self, *, namespace: str = "botperf") -> None:
        namespace = _check_namespace(namespace)
        self._prefix = f"{namespace}_" if namespace else ""
        self._objects = ObjectRegistry()

    def __repr__(self) -> str:
        return f"<BotperfCollector namespace={self._prefix.rstrip('_')!r}>"

    def add(self, name: str, obj: object) -> None:
        """Export ``obj`` under the label ``name="<name>"`` from the next scrape on.

        ``obj`` is a `botperf.LatencyRecorder` or any object whose ``stats`` is one of
        botperf's snapshots: `botperf.Deduplicator`, `botperf.HistoryStore`,
        `botperf.BatchMetricsWriter`, and the rate limiters. Objects of different
        kinds may share a name; many objects of one kind share the collector's metrics,
        told apart by their names.

        Args:
            name: The ``name`` label value: printable text, no line breaks.
            obj: The object to export; kept referenced by the collector.

        Raises:
            TypeError: If ``obj`` cannot be exported (with the kinds that can) or
                ``name`` is not a string.
            ValueError: If ``name`` is empty or not printable, another object of the
                same kind has it, or ``obj`` was added already.
        """
        self._objects.add(name, obj)

    def describe(self) -> list[Metric]:
        """Every metric family the collector can export, without samples.

        prometheus_client calls this at `register` to refuse two collectors that would
        export the same names, whatever objects are added later.
        """
        families: list[Metric] = [
            self._family(entry, figure) for entry in EXPORTED.values() for figure in entry.figures
        ]
        families += self._latency_families()
        return families

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of every object added, read now."""
        for kind in self._objects.kinds():
            if kind == LATENCY:
                yield from self._collect_latency()
            else:
                yield from self._collect_stats(EXPORTED[kind], self._objects.items(kind))

    def _name(self, entry: Exported, figure: Figure) -> str:
        return f"{self._prefix}{entry.subsystem}_{figure.attribute}"

    def _family(self, entry: Exported, figure: Figure) -> Metric:
        name = self._name(entry, figure)
        if figure.kind == "counter":
            return CounterMetricFamily(name, figure.description, labels=["name"])
        return GaugeMetricFamily(name, figure.description, labels=["name"])

    def _collect_stats(
        self, entry: Exported, objects: list[tuple[str, object]]
    ) -> Iterator[Metric]:
        # One snapshot per object, so all of its figures in a scrape come from one moment.
        snapshots = [(name, obj, obj.stats) for name, obj in objects]  # type: ignore[attr-defined]
        for figure in entry.figures:
            family = self._family(entry, figure)
            attribute = figure.attribute
            for name, obj, stats in snapshots:
                value = getattr(obj if figure.on_object else stats, attribute)
                family.add_metric([name], value)  # type: ignore[attr-defined]
            yield family

    def _latency_families(self) -> tuple[SummaryMetricFamily, CounterMetricFamily, Metric]:
        labels = ["name", "timer"]
        return (
            SummaryMetricFamily(
                f"{self._prefix}latency_seconds", _LATENCY_DOC, labels=labels, unit="seconds"
            ),
            CounterMetricFamily(f"{self._prefix}latency_errors", _ERRORS_DOC, labels=labels),
            GaugeMetricFamily(
                f"{self._prefix}latency_max_seconds", _MAX_DOC, labels=labels, unit="seconds"
            ),
        )

    def _collect_latency(self) -> Iterator[Metric]:
        summary, errors, maximum = self._latency_families()
        for name, recorder in self._objects.items(LATENCY):
            assert isinstance(recorder, LatencyRecorder)
            for timer, stats in recorder.summary().items():
                for quantile, attribute in QUANTILES:
                    summary.add_sample(
                        summary.name,
                        {"name": name, "timer": timer, "quantile": repr(quantile)},
                        getattr(stats, attribute),
                    )
                summary.add_metric([name, timer], stats.count, stats.total)
                errors.add_metric([name, timer], stats.errors)
                maximum.add_metric([name, timer], stats.max)  # type: ignore[attr-defined]
        yield from (summary, errors, maximum)
