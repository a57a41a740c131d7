"""`instrument`: botperf's figures as OpenTelemetry observable instruments on a `Meter`."""

from __future__ import annotations

import functools
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import final

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from .._exceptions import BotperfTypeError, InvalidOptionError
from .._export import (
    EXPORTED,
    LATENCY,
    QUANTILES,
    Exported,
    Figure,
    ObjectRegistry,
    check_object_name,
    exported_kind,
)
from .._latency import LatencyRecorder, LatencyStats

__all__ = ["GenAIOperation", "GenAIRecorder", "instrument"]

# OpenTelemetry instrument names: an ASCII letter, then letters, digits, "_", ".", "-".
_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")

# The boundaries the GenAI semantic conventions advise for these two histograms.
_DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
_DURATION_BUCKETS += (1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = tuple(float(4**power) for power in range(14))

#: The attribute that tells objects of one kind apart (the Prometheus ``name`` label).
NAME_ATTRIBUTE = "botperf.name"
#: The attribute of each timed name of a `LatencyRecorder`.
TIMER_ATTRIBUTE = "botperf.timer"


@final
@dataclass(frozen=True, slots=True)
class GenAIOperation:
    """Marks a timed name, or an event name, as a generative-AI client operation.

    Given to `instrument` as ``gen_ai={"ollama.chat": GenAIOperation(...)}``, it makes
    the returned `GenAIRecorder` record the events of that name into the semantic
    conventions' histograms: an event's ``duration_ms`` (what ``timed(...,
    metrics=...)`` records) into ``gen_ai.client.operation.duration``, and its token
    counts, from the fields named here, into ``gen_ai.client.token.usage``.

    Args:
        operation: ``gen_ai.operation.name``, e.g. ``"chat"``, ``"text_completion"``,
            ``"embeddings"``.
        provider: ``gen_ai.provider.name``, e.g. ``"ollama"``, ``"openai"``.
        model: ``gen_ai.request.model``, e.g. ``"llama3.2"``; left out when ``None``.
        input_tokens_field: The event field holding the input (prompt) token count,
            e.g. Ollama's ``"prompt_eval_count"``; ``None`` records no input tokens.
        output_tokens_field: The event field holding the output token count, e.g.
            Ollama's ``"eval_count"``.

    Raises:
        InvalidOptionError: If ``operation`` or ``provider`` is not a non-empty
            string, or ``model`` or a field name is neither ``None`` nor one.
    """

    operation: str
    provider: str
    model: str | None = None
    input_tokens_field: str | None = None
    output_tokens_field: str | None = None

    def __post_init__(self) -> None:
        for option in ("operation", "provider"):
            value = getattr(self, option)
            if not isinstance(value, str) or not value:
                raise InvalidOptionError("GenAIOperation", option, value, "a non-empty str")
        for option in ("model", "input_tokens_field", "output_tokens_field"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidOptionError("GenAIOperation", option, value, "None or a non-empty str")

    def attributes(self) -> dict[str, str]:
        """The semantic-convention attributes of this operation's measurements."""
        attributes = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": self.provider,
        }
        if self.model is not None:
            attributes["gen_ai.request.model"] = self.model
        return attributes


@final
class GenAIRecorder:
    """Records GenAI operations' durations and tokens into OpenTelemetry histograms.

    What `instrument` returns: an `botperf.EventRecorder`, so pass it as
    ``timed(name, metrics=...)`` for each duration, and call `record` with token
    counts (e.g. from the LLM's reply). Events whose name `instrument` was not told
    is a `GenAIOperation` are ignored. Histograms need each value, which observable
    instruments cannot give, hence a recorder beside the observed figures.
    """

    __slots__ = ("_duration", "_operations", "_tokens")

    def __init__(
        self,
        operations: Mapping[str, GenAIOperation],
        duration: Histogram | None,
        tokens: Histogram | None,
    ) -> None:
        self._operations = {name: (op, op.attributes()) for name, op in operations.items()}
        self._duration = duration
        self._tokens = tokens

    def __repr__(self) -> str:
        return f"<GenAIRecorder of {sorted(self._operations)}>"

    @property
    def operations(self) -> dict[str, GenAIOperation]:
        """The event names recorded, and the operation each stands for."""
        return {name: op for name, (op, _) in self._operations.items()}

    def record(self, event: str, /, **fields: object) -> None:
        """Record ``event``'s duration and token counts, if it is a GenAI operation.

        ``duration_ms`` (milliseconds) goes to ``gen_ai.client.operation.duration`` in
        seconds, with ``error.type`` ``"_OTHER"`` when ``error`` is true; the token
        fields the operation names go to ``gen_ai.client.token.usage`` with
        ``gen_ai.token.type`` ``"input"`` or ``"output"``. A field that is missing or
        ``None`` (a deduplicated call, say) records nothing. O(1); never blocks.

        Args:
            event: The event (timed) name.
            **fields: The event's fields.

        Raises:
            TypeError: If a duration or token field is not a number.
        """
        entry = self._operations.get(event)
        if entry is None:
            return
        operation, attributes = entry
        duration = fields.get("duration_ms")
        if duration is not None and self._duration is not None:
            seconds = _number(event, "duration_ms", duration) / 1000.0
            if fields.get("error"):
                self._duration.record(seconds, {**attributes, "error.type": "_OTHER"})
            else:
                self._duration.record(seconds, attributes)
        if self._tokens is None:
            return
        for field, token_type in (
            (operation.input_tokens_field, "input"),
            (operation.output_tokens_field, "output"),
        ):
            count = None if field is None else fields.get(field)
            if count is not None:
                self._tokens.record(
                    _number(event, str(field), count),
                    {**attributes, "gen_ai.token.type": token_type},
                )


def _number(event: str, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BotperfTypeError(
            f"event {event!r}: {field} must be a number, got {type(value).__name__}: {value!r}"
        )
    return value


_Callback = Callable[[CallbackOptions], Iterable[Observation]]


@final
class _Instruments:
    """The objects instrumented on one meter under one namespace, and its instruments.

    Each kind's instruments are created once, with the first object of the kind; their
    callbacks read the registry, so objects added later are observed too.
    """

    def __init__(self, meter: Meter, namespace: str) -> None:
        self.meter = meter
        self.namespace = namespace
        self.objects = ObjectRegistry()
        self.kinds: set[str] = set()
        self.histograms: tuple[Histogram, Histogram] | None = None
        self.lock = threading.Lock()

    def add(self, name: str, obj: object) -> None:
        kind = self.objects.add(name, obj)
        with self.lock:
            if kind in self.kinds:
                return
            self.kinds.add(kind)
        if kind == LATENCY:
            self._create_latency()
        else:
            self._create_stats(kind, EXPORTED[kind])

    def gen_ai_histograms(self) -> tuple[Histogram, Histogram]:
        with self.lock:
            if self.histograms is None:
                self.histograms = (
                    self.meter.create_histogram(
                        "gen_ai.client.operation.duration",
                        unit="s",
                        description="GenAI operation duration.",
                        explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
                    ),
                    self.meter.create_histogram(
                        "gen_ai.client.token.usage",
                        unit="{token}",
                        description="Number of input and output tokens used.",
                        explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
                    ),
                )
            return self.histograms

    def _create_stats(self, kind: str, entry: Exported) -> None:
        for figure in entry.figures:
            name = f"{self.namespace}.{entry.subsystem}.{figure.attribute}"
            callback: _Callback = functools.partial(self._observe_figure, kind, figure)
            if figure.kind == "counter":
                self.meter.create_observable_counter(
                    name, [callback], unit=figure.unit, description=figure.description
                )
            else:
                self.meter.create_observable_up_down_counter(
                    name, [callback], unit=figure.unit, description=figure.description
                )

    def _observe_figure(
        self, kind: str, figure: Figure, options: CallbackOptions
    ) -> list[Observation]:
        observations = []
        for name, obj in self.objects.items(kind):
            source = obj if figure.on_object else obj.stats  # type: ignore[attr-defined]
            observations.append(
                Observation(getattr(source, figure.attribute), {NAME_ATTRIBUTE: name})
            )
        return observations

    def _create_latency(self) -> None:
        prefix = f"{self.namespace}.latency"
        meter = self.meter

        def observe(
            read: Callable[[LatencyStats], Iterable[tuple[float, dict[str, str]]]],
        ) -> _Callback:
            def callback(options: CallbackOptions) -> list[Observation]:
                observations = []
                for name, recorder in self.objects.items(LATENCY):
                    assert isinstance(recorder, LatencyRecorder)
                    for timer, stats in recorder.summary().items():
                        base = {NAME_ATTRIBUTE: name, TIMER_ATTRIBUTE: timer}
                        for value, extra in read(stats):
                            observations.append(Observation(value, {**base, **extra}))
                return observations

            return callback

        meter.create_observable_counter(
            f"{prefix}.count",
            [observe(lambda s: [(s.count, {})])],
            unit="{timing}",
            description="Durations timed under each name.",
        )
        meter.create_observable_counter(
            f"{prefix}.sum",
            [observe(lambda s: [(s.total, {})])],
            unit="s",
            description="The sum of the durations timed under each name.",
        )
        meter.create_observable_counter(
            f"{prefix}.errors",
            [observe(lambda s: [(s.errors, {})])],
            unit="{timing}",
            description="Timings whose function or block raised.",
        )
        meter.create_observable_gauge(
            f"{prefix}.duration",
            [
                observe(
                    lambda s: [
                        (getattr(s, attribute), {"quantile": repr(q)}) for q, attribute in QUANTILES
                    ]
                )
            ],
            unit="s",
            description="Duration quantiles (0.5, 0.9, 0.99) within the recorder's accuracy.",
        )
        meter.create_observable_gauge(
            f"{prefix}.max",
            [observe(lambda s: [(s.max, {})])],
            unit="s",
            description="The longest duration timed under each name.",
        )


def _check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidOptionError(
            "instrument",
            "namespace",
            namespace,
            "an ASCII letter then letters, digits, '_', '.' or '-'",
        )
    return namespace


def _check_operations(gen_ai: object) -> dict[str, GenAIOperation]:
    if gen_ai is None:
        return {}
    if not isinstance(gen_ai, Mapping) or not all(
        isinstance(name, str) and isinstance(op, GenAIOperation) for name, op in gen_ai.items()
    ):
        raise InvalidOptionError(
            "instrument", "gen_ai", gen_ai, "a mapping of event names to GenAIOperation objects"
        )
    return dict(gen_ai)


_registries: weakref.WeakKeyDictionary[Meter, dict[str, _Instruments]] = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def _instruments_of(meter: Meter, namespace: str) -> _Instruments:
    with _registries_lock:
        by_namespace = _registries.setdefault(meter, {})
        instruments = by_namespace.get(namespace)
        if instruments is None:
            instruments = by_namespace[namespace] = _Instruments(meter, namespace)
        return instruments


def instrument(
    meter: Meter,
    /,
    *,
    namespace: str = "botperf",
    gen_ai: Mapping[str, GenAIOperation] | None = None,
    **objects: object,
) -> GenAIRecorder:
    """Observe botperf objects on ``meter``, read from their ``stats`` at each collection.

    Each keyword names an object, as the ``botperf.name`` attribute of its
    observations: a `botperf.LatencyRecorder`, or an object whose ``stats`` is one of
    botperf's snapshots (`botperf.Deduplicator`, `botperf.HistoryStore`,
    `botperf.BatchMetricsWriter`, the rate limiters). Counters become observable
    counters (``botperf.dedup.executions``), sizes observable up-down counters
    (``botperf.history.channels``), and each recorder's timed names (attribute
    ``botperf.timer``) the counters ``botperf.latency.count``, ``.sum``, ``.errors``
    and the gauges ``botperf.latency.duration`` (attribute ``quantile``) and
    ``.max``. Nothing runs between collections. Call it again on the same meter to
    add objects; the instruments are made once.

    The returned `GenAIRecorder` records the ``gen_ai`` operations, by event name,
    into ``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage``: pass
    it to ``timed(name, metrics=...)``. See the Monitoring page.

    Args:
        meter: The meter to create the instruments on.
        namespace: The first part of every instrument name (``gen_ai.*`` excepted).
        gen_ai: Timed or event names that are GenAI client operations.
        **objects: The objects to observe, by name.

    Returns:
        The recorder of the ``gen_ai`` operations (it ignores every other event).

    Raises:
        InvalidOptionError: If ``namespace`` is not a valid instrument name start, or
            ``gen_ai`` is not a mapping of names to `GenAIOperation` objects.
        TypeError: If an object cannot be exported.
        ValueError: If a name is taken by an object of the same kind on this meter, or
            an object was instrumented already.
    """
    namespace = _check_namespace(namespace)
    operations = _check_operations(gen_ai)
    for name, obj in objects.items():  # refuse a wrong object before adding any
        check_object_name(name)
        exported_kind(obj)
    instruments = _instruments_of(meter, namespace)
    for name, obj in objects.items():
        instruments.add(name, obj)
    if not operations:
        return GenAIRecorder({}, None, None)
    duration, tokens = instruments.gen_ai_histograms()
    return GenAIRecorder(operations, duration, tokens)
