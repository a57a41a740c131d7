"""botperf.prometheus: every figure, scraped over HTTP from a real prometheus_client server."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anyio
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import botperf.prometheus
from botperf import (
    BatchMetricsWriter,
    Deduplicator,
    DedupStats,
    HistoryStats,
    HistoryStore,
    InvalidOptionError,
    LatencyRecorder,
    WriterStats,
)
from botperf._export import EXPORTED
from botperf.prometheus import BotperfCollector

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Scrape:
    samples: Samples
    types: dict[str, str]

    def value(self, metric: str, /, **labels: str) -> float:
        return self.samples[(metric, frozenset(labels.items()))]

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample, labels in self.samples if sample == name]


def parse(text: str) -> Scrape:
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return Scrape(samples, types)


@pytest.fixture
def served() -> Iterator[tuple[CollectorRegistry, Callable[[], Scrape]]]:
    """A registry served by prometheus_client's own HTTP server on 127.0.0.1, and a scraper."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"

    def scrape() -> Scrape:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
            return parse(response.read().decode("utf-8"))

    try:
        yield registry, scrape
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def collector(served: tuple[CollectorRegistry, Callable[[], Scrape]]) -> BotperfCollector:
    registry, _ = served
    collector = BotperfCollector(namespace="mybot")
    registry.register(collector)
    return collector


@pytest.fixture
def scrape(served: tuple[CollectorRegistry, Callable[[], Scrape]]) -> Callable[[], Scrape]:
    return served[1]


def assert_exported(scrape: Scrape, subsystem: str, name: str, obj: object) -> None:
    """Every field of ``obj.stats`` (and each object figure) equals its sample."""
    stats = obj.stats  # type: ignore[attr-defined]
    entry = EXPORTED[type(stats).__name__]
    assert entry.subsystem == subsystem
    for figure in entry.figures:
        source = obj if figure.on_object else stats
        suffix = "_total" if figure.kind == "counter" else ""
        metric = f"mybot_{subsystem}_{figure.attribute}"
        assert scrape.types[metric] == figure.kind
        assert scrape.value(metric + suffix, name=name) == getattr(source, figure.attribute)


def test_public_api_is_the_collector() -> None:
    assert botperf.prometheus.__all__ == ["BotperfCollector"]
    empty: Collector = BotperfCollector()  # what prometheus_client's registry takes
    assert list(empty.collect()) == []


@pytest.mark.anyio
async def test_dedup_counters_and_in_flight_match_stats_at_every_scrape(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    dedup = Deduplicator(ttl=60)
    collector.add("llm", dedup)
    release = anyio.Event()

    async def slow(value: int) -> int:
        await release.wait()
        return value

    async def failing() -> int:
        raise RuntimeError("boom")

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(dedup.run, "a", slow, 1)
        await anyio.wait_all_tasks_blocked()
        during = await anyio.to_thread.run_sync(scrape)
        assert during.value("mybot_dedup_in_flight", name="llm") == 1
        assert during.value("mybot_dedup_shared_total", name="llm") == 2
        assert_exported(during, "dedup", "llm", dedup)
        release.set()
    assert await dedup.run("a", slow, 1) == 1  # from the ttl cache
    with pytest.raises(RuntimeError):
        await dedup.run("b", failing)

    after = await anyio.to_thread.run_sync(scrape)
    assert dedup.stats == DedupStats(calls=5, executions=2, shared=2, cache_hits=1, errors=1)
    assert after.value("mybot_dedup_executions_total", name="llm") == 2
    assert after.value("mybot_dedup_in_flight", name="llm") == 0
    assert_exported(after, "dedup", "llm", dedup)


def test_many_deduplicators_share_the_collector_told_apart_by_name(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    dedups = {f"shard{i}": Deduplicator() for i in range(3)}
    for name, dedup in dedups.items():
        collector.add(name, dedup)
    result = scrape()
    assert result.series("mybot_dedup_calls_total") == [{"name": n} for n in dedups]
    for name, dedup in dedups.items():
        assert_exported(result, "dedup", name, dedup)


def test_history_counters_and_sizes_match_stats(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    history: HistoryStore[int] = HistoryStore(max_channels=2)
    collector.add("chat", history)
    for channel in (1, 2, 3):
        history.append(channel, "user", f"hello {channel}")
    history.append(3, "assistant", "hi")
    history.get(3)
    history.get(1)  # evicted: a miss
    result = scrape()
    assert history.stats == HistoryStats(
        hits=1, misses=1, evictions=1, evict_errors=0, over_budget=0, channels=2, messages=3
    )
    assert result.value("mybot_history_evictions_total", name="chat") == 1
    assert result.value("mybot_history_channels", name="chat") == 2
    assert_exported(result, "history", "chat", history)


@pytest.mark.anyio
async def test_writer_counters_and_waiting_match_stats_before_and_after_writing(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    batches: list[list[dict[str, object]]] = []
    writer = BatchMetricsWriter(batches.append, max_batch=2, max_buffer=3, on_full="drop_new")
    collector.add("events", writer)
    for index in range(5):
        writer.record("message_in", index=index)
    before = await anyio.to_thread.run_sync(scrape)
    assert before.value("mybot_writer_waiting", name="events") == 3
    assert before.value("mybot_writer_dropped_total", name="events") == 2
    assert_exported(before, "writer", "events", writer)
    async with writer:
        pass
    after = await anyio.to_thread.run_sync(scrape)
    assert writer.stats == WriterStats(
        recorded=5,
        written=3,
        batches=2,
        dropped=2,
        failed_writes=0,
        waiting=0,
        unwritten=0,
        repr_values=0,
    )
    assert after.value("mybot_writer_written_total", name="events") == 3
    assert_exported(after, "writer", "events", writer)


def exact_percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def test_latency_recorder_is_a_summary_per_timed_name(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    recorder = LatencyRecorder()
    collector.add("latency", recorder)
    durations = {
        "ollama.chat": [0.2 + 0.013 * i for i in range(200)],
        "reply": [0.001 * (i % 17 + 1) for i in range(50)],
    }
    for timer, values in durations.items():
        for index, seconds in enumerate(values):
            recorder.observe(timer, seconds, error=index % 10 == 0)
    result = scrape()
    assert result.types["mybot_latency_seconds"] == "summary"
    summary = recorder.summary()
    for timer, values in durations.items():
        stats = summary[timer]
        labels = {"name": "latency", "timer": timer}
        for quantile, reported in (("0.5", stats.p50), ("0.9", stats.p90), ("0.99", stats.p99)):
            value = result.value("mybot_latency_seconds", quantile=quantile, **labels)
            assert value == reported
            exact = exact_percentile(values, float(quantile))
            assert abs(value - exact) <= recorder.relative_accuracy * exact
        assert result.value("mybot_latency_seconds_count", **labels) == stats.count == len(values)
        assert result.value("mybot_latency_seconds_sum", **labels) == stats.total
        assert stats.total == pytest.approx(math.fsum(values), rel=1e-12)
        assert result.value("mybot_latency_errors_total", **labels) == stats.errors
        assert result.value("mybot_latency_max_seconds", **labels) == stats.max == max(values)


def test_values_are_read_at_each_scrape_not_copied(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    history: HistoryStore[str] = HistoryStore()
    recorder = LatencyRecorder()
    collector.add("chat", history)
    collector.add("latency", recorder)
    first = scrape()
    assert first.value("mybot_history_messages", name="chat") == 0
    assert first.series("mybot_latency_seconds_count") == []
    history.append("general", "user", "hi")
    recorder.observe("reply", 0.5)
    second = scrape()
    assert second.value("mybot_history_messages", name="chat") == 1
    assert second.value("mybot_latency_seconds_count", name="latency", timer="reply") == 1


def test_every_metric_name_is_the_documented_one(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    collector.add("llm", Deduplicator())
    collector.add("chat", HistoryStore())
    collector.add("events", BatchMetricsWriter(lambda batch: None))
    recorder = LatencyRecorder()
    recorder.observe("reply", 0.1)
    collector.add("latency", recorder)
    assert set(scrape().types.items()) == {
        ("mybot_dedup_calls", "counter"),
        ("mybot_dedup_executions", "counter"),
        ("mybot_dedup_shared", "counter"),
        ("mybot_dedup_cache_hits", "counter"),
        ("mybot_dedup_errors", "counter"),
        ("mybot_dedup_in_flight", "gauge"),
        ("mybot_history_hits", "counter"),
        ("mybot_history_misses", "counter"),
        ("mybot_history_evictions", "counter"),
        ("mybot_history_evict_errors", "counter"),
        ("mybot_history_over_budget", "counter"),
        ("mybot_history_channels", "gauge"),
        ("mybot_history_messages", "gauge"),
        ("mybot_history_trim_errors", "counter"),
        ("mybot_writer_recorded", "counter"),
        ("mybot_writer_written", "counter"),
        ("mybot_writer_batches", "counter"),
        ("mybot_writer_dropped", "counter"),
        ("mybot_writer_failed_writes", "counter"),
        ("mybot_writer_waiting", "gauge"),
        ("mybot_writer_unwritten", "counter"),
        ("mybot_writer_repr_values", "counter"),
        ("mybot_latency_seconds", "summary"),
        ("mybot_latency_errors", "counter"),
        ("mybot_latency_max_seconds", "gauge"),
    }


# Stand-ins with the field names of the limiters' snapshots (being written alongside):
# the table is keyed by the snapshot's class name and checks its fields.
@dataclass(frozen=True)
class RateLimiterStats:
    admitted: int
    limited: int
    keys: int


@dataclass(frozen=True)
class FairLimiterStats:
    in_use: int
    waiting: int
    admitted: int
    rejected: int


class Limiter:
    def __init__(self, stats: object) -> None:
        self.stats = stats


def test_rate_limiters_are_exported_by_their_stats_type(
    collector: BotperfCollector, scrape: Callable[[], Scrape]
) -> None:
    rate = Limiter(RateLimiterStats(admitted=7, limited=2, keys=3))
    fair = Limiter(FairLimiterStats(in_use=1, waiting=4, admitted=9, rejected=5))
    collector.add("users", rate)
    collector.add("users", fair)
    result = scrape()
    assert result.value("mybot_rate_limiter_limited_total", name="users") == 2
    assert result.value("mybot_rate_limiter_keys", name="users") == 3
    assert result.value("mybot_fair_limiter_waiting", name="users") == 4
    assert result.value("mybot_fair_limiter_rejected_total", name="users") == 5
    assert_exported(result, "rate_limiter", "users", rate)
    assert_exported(result, "fair_limiter", "users", fair)


@pytest.mark.parametrize("stats_type", [DedupStats, HistoryStats, WriterStats])
def test_the_table_names_every_field_of_each_stats_type(stats_type: type) -> None:
    fields = {field.name for field in dataclasses.fields(stats_type)}
    assert EXPORTED[stats_type.__name__].stats_fields == fields


def test_a_snapshot_whose_fields_changed_is_refused() -> None:
    @dataclass(frozen=True)
    class DedupStats:  # an older or newer shape of the real one
        calls: int

    with pytest.raises(TypeError, match=r"DedupStats has the fields \['calls'\]"):
        BotperfCollector().add("llm", Limiter(DedupStats(calls=1)))


class AsyncStats:
    async def stats(self) -> HistoryStats:  # like botperf.redis.RedisHistoryStore
        raise NotImplementedError


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (object(), "object objects: they have no stats"),
        ({"calls": 1}, "dict objects: they have no stats"),
        (Limiter({"calls": 1}), "cannot export Limiter objects; botperf exports"),
        (AsyncStats(), "read with await"),
    ],
)
def test_unsupported_objects_are_refused_at_add(obj: object, message: str) -> None:
    collector = BotperfCollector()
    with pytest.raises(TypeError, match=message):
        collector.add("x", obj)
    assert list(collector.collect()) == []


@pytest.mark.parametrize("name", ["", "two\nlines", "nul\x00", "tab\there", "\ud800"])
def test_a_name_that_cannot_be_a_label_value_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be a metric label value"):
        BotperfCollector().add(name, Deduplicator())


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="the name must be a str"):
        BotperfCollector().add(1, Deduplicator())  # type: ignore[arg-type]


@pytest.mark.parametrize("namespace", ["1bot", "my-bot", "my bot", "bot:", 3, None])
def test_a_namespace_that_is_not_a_metric_name_is_refused(namespace: object) -> None:
    with pytest.raises(InvalidOptionError, match="namespace"):
        BotperfCollector(namespace=namespace)  # type: ignore[arg-type]


def test_an_empty_namespace_leaves_names_unprefixed(
    served: tuple[CollectorRegistry, Callable[[], Scrape]],
) -> None:
    registry, scrape = served
    collector = BotperfCollector(namespace="")
    registry.register(collector)
    collector.add("llm", Deduplicator())
    assert scrape().value("dedup_calls_total", name="llm") == 0


def test_a_name_is_taken_once_per_kind_and_an_object_once() -> None:
    collector = BotperfCollector()
    dedup = Deduplicator()
    collector.add("llm", dedup)
    collector.add("llm", HistoryStore())  # another kind: fine
    with pytest.raises(ValueError, match="'llm' is taken by another Deduplicator"):
        collector.add("llm", Deduplicator())
    with pytest.raises(ValueError, match="added already as 'llm'"):
        collector.add("other", dedup)


def test_registering_two_collectors_with_one_namespace_is_refused() -> None:
    registry = CollectorRegistry()
    registry.register(BotperfCollector(namespace="mybot"))
    registry.register(BotperfCollector(namespace="other"))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(BotperfCollector(namespace="mybot"))


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_import_botperf_does_not_import_prometheus_client() -> None:
    result = run_python(
        "import sys, botperf; print('prometheus_client' in sys.modules, "
        "any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_botperf_prometheus_without_prometheus_client_names_the_extra() -> None:
    result = run_python(
        "import sys; sys.modules['prometheus_client'] = None; import botperf.prometheus"
    )
    assert result.returncode == 1
    assert "ImportError: botperf.prometheus needs prometheus_client" in result.stderr
    assert "pip install 'botperf[prometheus]'" in result.stderr


def test_an_object_without_the_figures_read_from_it_is_refused() -> None:
    lookalike = Limiter(DedupStats(calls=0, executions=0, shared=0, cache_hits=0, errors=0))
    with pytest.raises(TypeError, match="lacks in_flight"):
        BotperfCollector().add("llm", lookalike)
