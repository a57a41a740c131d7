"""botperf.otel: every figure, collected by the OpenTelemetry SDK's InMemoryMetricReader."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Sum,
)

import botperf.otel
from botperf import (
    BatchMetricsWriter,
    Deduplicator,
    HistoryStore,
    InvalidOptionError,
    LatencyRecorder,
    timed,
)
from botperf._export import EXPORTED
from botperf.otel import GenAIOperation, instrument

Attributes = frozenset[tuple[str, Any]]


@dataclass
class Instrument:
    unit: str
    kind: str  # "counter", "up_down_counter", "gauge" or "histogram"
    points: dict[Attributes, Any]

    def value(self, **attributes: Any) -> Any:
        return self.points[frozenset(attributes.items())]


def kind_of(data: object) -> str:
    if isinstance(data, Sum):
        return "counter" if data.is_monotonic else "up_down_counter"
    if isinstance(data, Gauge):
        return "gauge"
    assert isinstance(data, Histogram)
    return "histogram"


Collected = dict[str, Instrument]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter(reader: InMemoryMetricReader) -> Iterator[Meter]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider.get_meter("botperf-tests")
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> Collected:
    collected: Collected = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points: dict[Attributes, Any] = {}
                for point in metric.data.data_points:
                    key = frozenset((point.attributes or {}).items())
                    points[key] = point if isinstance(point, HistogramDataPoint) else point.value
                collected[metric.name] = Instrument(metric.unit or "", kind_of(metric.data), points)
    return collected


def assert_observed(collected: Collected, subsystem: str, name: str, obj: object) -> None:
    """Every figure of ``obj`` equals its observation, with the table's kind and unit."""
    stats = obj.stats  # type: ignore[attr-defined]
    entry = EXPORTED[type(stats).__name__]
    assert entry.subsystem == subsystem
    for figure in entry.figures:
        instrument_ = collected[f"botperf.{subsystem}.{figure.attribute}"]
        expected_kind = "counter" if figure.kind == "counter" else "up_down_counter"
        assert (instrument_.kind, instrument_.unit) == (expected_kind, figure.unit)
        source = obj if figure.on_object else stats
        assert instrument_.value(**{"botperf.name": name}) == getattr(source, figure.attribute)


def test_public_api() -> None:
    assert botperf.otel.__all__ == ["GenAIOperation", "GenAIRecorder", "instrument"]


@pytest.mark.anyio
async def test_dedup_history_and_writer_figures_match_stats(
    meter: Meter, reader: InMemoryMetricReader
) -> None:
    dedup = Deduplicator()
    history: HistoryStore[int] = HistoryStore(max_channels=1)
    writer = BatchMetricsWriter(lambda batch: None, max_batch=2, max_buffer=2, on_full="drop_new")
    instrument(meter, llm=dedup, chat=history, events=writer)
    release = anyio.Event()

    async def slow() -> int:
        await release.wait()
        return 1

    history.append(1, "user", "a")
    history.append(2, "user", "b")
    history.get(1)
    for _ in range(3):
        writer.record("message_in")
    async with anyio.create_task_group() as tg:
        tg.start_soon(dedup.run, "k", slow)
        tg.start_soon(dedup.run, "k", slow)
        await anyio.wait_all_tasks_blocked()
        during = collect(reader)
        assert during["botperf.dedup.in_flight"].value(**{"botperf.name": "llm"}) == 1
        assert_observed(during, "dedup", "llm", dedup)
        release.set()
    after = collect(reader)
    assert after["botperf.dedup.shared"].value(**{"botperf.name": "llm"}) == 1
    assert after["botperf.history.evictions"].value(**{"botperf.name": "chat"}) == 1
    assert after["botperf.writer.dropped"].value(**{"botperf.name": "events"}) == 1
    assert after["botperf.writer.waiting"].value(**{"botperf.name": "events"}) == 2
    assert_observed(after, "dedup", "llm", dedup)
    assert_observed(after, "history", "chat", history)
    assert_observed(after, "writer", "events", writer)


def test_latency_recorder_figures_per_timed_name(
    meter: Meter, reader: InMemoryMetricReader
) -> None:
    recorder = LatencyRecorder()
    for index in range(100):
        recorder.observe("ollama.chat", 0.1 + 0.01 * index, error=index % 25 == 0)
    recorder.observe("reply", 0.003)
    instrument(meter, latency=recorder)
    collected = collect(reader)
    for timer, stats in recorder.summary().items():
        labels = {"botperf.name": "latency", "botperf.timer": timer}
        count, total = collected["botperf.latency.count"], collected["botperf.latency.sum"]
        assert (count.kind, count.unit, count.value(**labels)) == (
            "counter",
            "{timing}",
            stats.count,
        )
        assert (total.kind, total.unit, total.value(**labels)) == ("counter", "s", stats.total)
        assert collected["botperf.latency.errors"].value(**labels) == stats.errors
        duration = collected["botperf.latency.duration"]
        assert (duration.kind, duration.unit) == ("gauge", "s")
        for quantile, reported in (("0.5", stats.p50), ("0.9", stats.p90), ("0.99", stats.p99)):
            assert duration.value(quantile=quantile, **labels) == reported
        assert collected["botperf.latency.max"].value(**labels) == stats.max
    assert (
        collected["botperf.latency.errors"].value(
            **{"botperf.name": "latency", "botperf.timer": "ollama.chat"}
        )
        == 4
    )


def test_values_are_read_at_each_collection(meter: Meter, reader: InMemoryMetricReader) -> None:
    history: HistoryStore[str] = HistoryStore()
    instrument(meter, chat=history)
    assert collect(reader)["botperf.history.messages"].value(**{"botperf.name": "chat"}) == 0
    history.append("general", "user", "hi")
    assert collect(reader)["botperf.history.messages"].value(**{"botperf.name": "chat"}) == 1


def test_a_second_call_adds_objects_to_the_same_instruments(
    meter: Meter, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = Deduplicator(), Deduplicator()
    instrument(meter, first=first)
    instrument(meter, second=second, chat=HistoryStore())
    collected = collect(reader)
    calls = collected["botperf.dedup.calls"]
    assert set(calls.points) == {
        frozenset({("botperf.name", "first")}),
        frozenset({("botperf.name", "second")}),
    }
    assert "botperf.history.hits" in collected
    # The SDK logs a warning when an instrument is created twice: it never was.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_another_namespace_makes_other_instruments(
    meter: Meter, reader: InMemoryMetricReader
) -> None:
    instrument(meter, namespace="mybot", llm=Deduplicator())
    assert "mybot.dedup.calls" in collect(reader)


OLLAMA_CHAT = GenAIOperation("chat", "ollama", "llama3.2")
LLM_CALL = GenAIOperation(
    "chat",
    "ollama",
    "llama3.2",
    input_tokens_field="prompt_eval_count",
    output_tokens_field="eval_count",
)
SEMCONV = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "ollama",
    "gen_ai.request.model": "llama3.2",
}


def test_timed_llm_calls_become_gen_ai_operation_durations(
    meter: Meter, reader: InMemoryMetricReader
) -> None:
    recorder = LatencyRecorder()
    gen_ai = instrument(meter, latency=recorder, gen_ai={"ollama.chat": OLLAMA_CHAT})
    assert gen_ai.operations == {"ollama.chat": OLLAMA_CHAT}
    for _ in range(3):
        with timed("ollama.chat", recorder=recorder, metrics=gen_ai):
            pass
    with pytest.raises(RuntimeError), timed("ollama.chat", recorder=recorder, metrics=gen_ai):
        raise RuntimeError("the model is gone")
    with timed("reply", recorder=recorder, metrics=gen_ai):  # not a GenAI operation
        pass
    collected = collect(reader)
    duration = collected["gen_ai.client.operation.duration"]
    assert (duration.kind, duration.unit) == ("histogram", "s")
    assert set(duration.points) == {
        frozenset(SEMCONV.items()),
        frozenset({**SEMCONV, "error.type": "_OTHER"}.items()),
    }
    ok, failed = duration.value(**SEMCONV), duration.value(**SEMCONV, **{"error.type": "_OTHER"})
    assert (ok.count, failed.count) == (3, 1)
    stats = recorder.summary()["ollama.chat"]
    assert ok.sum + failed.sum == pytest.approx(stats.total, rel=1e-9)
    assert list(ok.explicit_bounds) == [0.01 * 2**i for i in range(14)]


def test_token_counts_become_gen_ai_token_usage(meter: Meter, reader: InMemoryMetricReader) -> None:
    gen_ai = instrument(meter, gen_ai={"llm_call": LLM_CALL})
    gen_ai.record("llm_call", latency_ms=800.0, prompt_eval_count=30, eval_count=12)
    gen_ai.record("llm_call", latency_ms=5.0, prompt_eval_count=None, eval_count=None)
    gen_ai.record("llm_call", prompt_eval_count=50, eval_count=20)
    collected = collect(reader)
    assert "gen_ai.client.operation.duration" not in collected  # llm_call has no duration_ms
    usage = collected["gen_ai.client.token.usage"]
    assert (usage.kind, usage.unit) == ("histogram", "{token}")
    given = usage.value(**SEMCONV, **{"gen_ai.token.type": "input"})
    produced = usage.value(**SEMCONV, **{"gen_ai.token.type": "output"})
    assert (given.count, given.sum, given.min, given.max) == (2, 80, 30, 50)
    assert (produced.count, produced.sum) == (2, 32)
    assert list(given.explicit_bounds) == [float(4**i) for i in range(14)]


def test_a_token_field_that_is_not_a_number_is_refused(meter: Meter) -> None:
    gen_ai = instrument(meter, gen_ai={"llm_call": LLM_CALL})
    with pytest.raises(TypeError, match="eval_count must be a number, got str"):
        gen_ai.record("llm_call", eval_count="12")


def test_without_gen_ai_the_recorder_records_nothing(
    meter: Meter, reader: InMemoryMetricReader
) -> None:
    gen_ai = instrument(meter, llm=Deduplicator())
    gen_ai.record("ollama.chat", duration_ms=5.0)
    assert not any(name.startswith("gen_ai.") for name in collect(reader))


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"operation": "", "provider": "ollama"}, "operation"),
        ({"operation": "chat", "provider": 3}, "provider"),
        ({"operation": "chat", "provider": "ollama", "model": ""}, "model"),
        ({"operation": "chat", "provider": "x", "output_tokens_field": 1}, "output_tokens_field"),
    ],
)
def test_gen_ai_operation_checks_its_options(options: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidOptionError, match=option):
        GenAIOperation(**options)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"namespace": "1bot"}, "namespace"),
        ({"namespace": ""}, "namespace"),
        ({"gen_ai": {"ollama.chat": "chat"}}, "gen_ai"),
        ({"gen_ai": ["ollama.chat"]}, "gen_ai"),
    ],
)
def test_instrument_checks_its_options(meter: Meter, options: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidOptionError, match=option):
        instrument(meter, **options)


def test_an_unsupported_object_is_refused_before_anything_is_added(
    meter: Meter, reader: InMemoryMetricReader
) -> None:
    with pytest.raises(TypeError, match="cannot export object objects"):
        instrument(meter, llm=Deduplicator(), bad=object())
    data = reader.get_metrics_data()
    assert data is None or not data.resource_metrics
    instrument(meter, llm=Deduplicator())  # the name was not taken


def test_a_name_is_taken_once_per_kind_on_a_meter(meter: Meter) -> None:
    instrument(meter, llm=Deduplicator())
    with pytest.raises(ValueError, match="'llm' is taken"):
        instrument(meter, llm=Deduplicator())


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_import_botperf_does_not_import_opentelemetry() -> None:
    result = run_python(
        "import sys, botperf; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    assert result.stdout.strip() == "False", result.stderr


def test_botperf_otel_without_opentelemetry_names_the_extra() -> None:
    result = run_python("import sys; sys.modules['opentelemetry'] = None; import botperf.otel")
    assert result.returncode == 1
    assert "ImportError: botperf.otel needs the OpenTelemetry API" in result.stderr
    assert "pip install 'botperf[otel]'" in result.stderr


def test_observed_sums_stay_exact_for_many_timings(
    meter: Meter, reader: InMemoryMetricReader
) -> None:
    recorder = LatencyRecorder()
    values = [0.001 * (i % 97 + 1) for i in range(2_000)]
    for seconds in values:
        recorder.observe("op", seconds)
    instrument(meter, latency=recorder)
    total = collect(reader)["botperf.latency.sum"].value(
        **{"botperf.name": "latency", "botperf.timer": "op"}
    )
    assert total == recorder.summary()["op"].total
    assert total == pytest.approx(math.fsum(values), rel=1e-12)
