"""What exporting costs: per event, and per scrape, against prometheus_client's own metrics.

The usual way to give Prometheus a bot's figures is to update a prometheus_client
``Counter``, ``Gauge`` or ``Summary`` on every event, beside the work itself. botperf's
primitives count anyway, so `BotperfCollector` adds nothing per event and reads
``stats`` at scrape time instead. The per-event groups time one botperf operation
alone and with the prometheus_client updates a user would add to it (the baseline);
the difference is what botperf saves on every event. The scrape groups time a whole
``generate_latest`` of 10 Deduplicators, 1 HistoryStore, 1 BatchMetricsWriter and a
LatencyRecorder of 50 timed names, against the same series kept in prometheus_client
objects (whose ``Summary`` has no quantiles).
"""

from __future__ import annotations

import random

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge, Summary, generate_latest

from botperf import BatchMetricsWriter, Deduplicator, HistoryStore, LatencyRecorder
from botperf.prometheus import BotperfCollector

from ._harness import Measurement, Report, ScalingChart, async_ns_per_op, ns_per_op

DEDUPLICATORS = 10
TIMED_NAMES = 50
SAMPLES_PER_NAME = 1_000
BASELINE = "+ prometheus_client updates per event (baseline)"
ALONE = "botperf alone (BotperfCollector reads stats at scrape)"


def _history_group(number: int, repeat: int) -> list[Measurement]:
    registry = CollectorRegistry()
    hits = Counter("history_hits", "", ["name"], registry=registry).labels("chat")
    channels = Gauge("history_channels", "", ["name"], registry=registry).labels("chat")
    messages = Gauge("history_messages", "", ["name"], registry=registry).labels("chat")
    plain: HistoryStore[int] = HistoryStore(max_channels=100)
    counted: HistoryStore[int] = HistoryStore(max_channels=100)
    state = {"channel": 0}

    def alone() -> None:
        channel = state["channel"] = (state["channel"] + 1) % 100
        plain.append(channel, "user", "hello")
        plain.get(channel)

    def with_prometheus() -> None:
        channel = state["channel"] = (state["channel"] + 1) % 100
        counted.append(channel, "user", "hello")
        channels.set(len(counted))
        messages.inc()
        counted.get(channel)
        hits.inc()

    group = "HistoryStore.append + get (ns per pair)"
    return [
        Measurement(
            group,
            BASELINE,
            "ns",
            ns_per_op(with_prometheus, number=number, repeat=repeat),
            baseline=True,
        ),
        Measurement(group, ALONE, "ns", ns_per_op(alone, number=number, repeat=repeat)),
    ]


def _writer_group(number: int, repeat: int) -> list[Measurement]:
    registry = CollectorRegistry()
    recorded = Counter("writer_recorded", "", ["name"], registry=registry).labels("events")
    waiting = Gauge("writer_waiting", "", ["name"], registry=registry).labels("events")
    # Never entered and never full: record() appends to the deque, as between two flushes.
    plain = BatchMetricsWriter(lambda batch: None, max_buffer=10**9, max_batch=10**9)
    counted = BatchMetricsWriter(lambda batch: None, max_buffer=10**9, max_batch=10**9)

    def alone() -> None:
        plain.record("message_in", chars=12)

    def with_prometheus() -> None:
        counted.record("message_in", chars=12)
        recorded.inc()
        waiting.inc()

    group = "BatchMetricsWriter.record (ns per event)"
    return [
        Measurement(
            group,
            BASELINE,
            "ns",
            ns_per_op(with_prometheus, number=number, repeat=repeat),
            baseline=True,
        ),
        Measurement(group, ALONE, "ns", ns_per_op(alone, number=number, repeat=repeat)),
    ]


def _latency_group(number: int, repeat: int) -> list[Measurement]:
    registry = CollectorRegistry()
    summary = Summary("latency_seconds", "", ["name", "timer"], registry=registry)
    child = summary.labels("latency", "ollama.chat")
    plain, counted = LatencyRecorder(), LatencyRecorder()
    plain_observe, counted_observe = plain.observe, counted.observe

    def alone() -> None:
        plain_observe("ollama.chat", 0.25)

    def with_prometheus() -> None:
        counted_observe("ollama.chat", 0.25)
        child.observe(0.25)

    group = "LatencyRecorder.observe (ns per duration)"
    return [
        Measurement(
            group,
            BASELINE,
            "ns",
            ns_per_op(with_prometheus, number=number, repeat=repeat),
            baseline=True,
        ),
        Measurement(group, ALONE, "ns", ns_per_op(alone, number=number, repeat=repeat)),
    ]


def _dedup_group(number: int, repeat: int) -> list[Measurement]:
    registry = CollectorRegistry()
    calls = Counter("dedup_calls", "", ["name"], registry=registry).labels("llm")
    hits = Counter("dedup_cache_hits", "", ["name"], registry=registry).labels("llm")
    in_flight = Gauge("dedup_in_flight", "", ["name"], registry=registry).labels("llm")
    plain, counted = Deduplicator(ttl=3600), Deduplicator(ttl=3600)

    async def answer() -> int:
        return 42

    async def alone() -> None:
        await plain.run("question", answer)

    async def with_prometheus() -> None:
        calls.inc()
        in_flight.inc()
        try:
            await counted.run("question", answer)
        finally:
            in_flight.dec()
        hits.inc()

    group = "Deduplicator.run, ttl cache hit, asyncio (ns per call)"
    measurements: list[Measurement] = []

    async def main() -> None:
        await alone()
        await with_prometheus()  # fill both caches: every timed call is a hit
        samples = await async_ns_per_op(with_prometheus, number=number, repeat=repeat)
        measurements.append(Measurement(group, BASELINE, "ns", samples, baseline=True))
        samples = await async_ns_per_op(alone, number=number, repeat=repeat)
        measurements.append(Measurement(group, ALONE, "ns", samples))

    anyio.run(main, backend="asyncio")
    return measurements


def _filled_recorder(names: int) -> LatencyRecorder:
    rng = random.Random(19)
    recorder = LatencyRecorder()
    for index in range(names):
        for _ in range(SAMPLES_PER_NAME):
            recorder.observe(f"timer.{index}", rng.lognormvariate(-2.0, 1.0))
    return recorder


def _botperf_registry(names: int) -> tuple[CollectorRegistry, BotperfCollector]:
    registry = CollectorRegistry()
    collector = BotperfCollector(namespace="bot")
    registry.register(collector)
    for index in range(DEDUPLICATORS):
        collector.add(f"dedup{index}", Deduplicator())
    history: HistoryStore[int] = HistoryStore()
    for channel in range(100):
        history.append(channel, "user", "hello")
    collector.add("chat", history)
    collector.add("events", BatchMetricsWriter(lambda batch: None))
    collector.add("latency", _filled_recorder(names))
    return registry, collector


def _prometheus_registry(names: int) -> CollectorRegistry:
    """The same series in prometheus_client's own objects, as updated on every event."""
    registry = CollectorRegistry()
    rng = random.Random(19)
    dedup = ["calls", "executions", "shared", "cache_hits", "errors"]
    history = ["hits", "misses", "evictions", "evict_errors", "over_budget"]
    writer = ["recorded", "written", "batches", "dropped", "failed_writes", "unwritten"]
    writer += ["repr_values"]
    counters = [("dedup", field) for field in dedup] + [("history", field) for field in history]
    counters += [("writer", field) for field in writer]
    for subsystem, field in counters:
        counter = Counter(f"bot_{subsystem}_{field}", "", ["name"], registry=registry)
        for index in range(DEDUPLICATORS if subsystem == "dedup" else 1):
            counter.labels(f"{subsystem}{index}").inc(index)
    gauges = [("dedup", "in_flight"), ("history", "channels"), ("history", "messages")]
    gauges += [("writer", "waiting")]
    for subsystem, field in gauges:
        gauge = Gauge(f"bot_{subsystem}_{field}", "", ["name"], registry=registry)
        for index in range(DEDUPLICATORS if subsystem == "dedup" else 1):
            gauge.labels(f"{subsystem}{index}").set(index)
    summary = Summary("bot_latency_seconds", "", ["name", "timer"], registry=registry)
    errors = Counter("bot_latency_errors", "", ["name", "timer"], registry=registry)
    maximum = Gauge("bot_latency_max_seconds", "", ["name", "timer"], registry=registry)
    for index in range(names):
        labels = ("latency", f"timer.{index}")
        child = summary.labels(*labels)
        for _ in range(SAMPLES_PER_NAME):
            child.observe(rng.lognormvariate(-2.0, 1.0))
        errors.labels(*labels)
        maximum.labels(*labels).set(1.0)
    return registry


def _scrape_groups(number: int, repeat: int) -> list[Measurement]:
    measurements: list[Measurement] = []
    for names in (10, TIMED_NAMES, 200):
        group = (
            f"scrape, {DEDUPLICATORS} Deduplicators + HistoryStore + writer + {names} "
            "timed names (µs per scrape)"
        )
        params = {"timed_names": names}
        (ours, collector), theirs = _botperf_registry(names), _prometheus_registry(names)

        def scrape_ours(registry: CollectorRegistry = ours) -> bytes:
            return generate_latest(registry)

        def scrape_theirs(registry: CollectorRegistry = theirs) -> bytes:
            return generate_latest(registry)

        def collect_only(collector: BotperfCollector = collector) -> object:
            return list(collector.collect())

        for implementation, operation, baseline in (
            ("prometheus_client objects, generate_latest (no quantiles)", scrape_theirs, True),
            ("BotperfCollector, generate_latest (with quantiles)", scrape_ours, False),
            ("BotperfCollector.collect() alone", collect_only, False),
        ):
            samples = ns_per_op(operation, number=number, repeat=repeat)
            measurements.append(
                Measurement(
                    group,
                    implementation,
                    "µs",
                    tuple(sample / 1000.0 for sample in samples),
                    baseline=baseline,
                    params=params,
                )
            )
    return measurements


def run(quick: bool) -> Report:
    number, repeat = (20_000, 5) if quick else (200_000, 9)
    scrapes = 20 if quick else 200
    report = Report(
        "exporters: botperf.prometheus against prometheus_client metrics updated per event",
        charts=[
            ScalingChart(
                title="scrape time by timed names",
                group_prefix="scrape,",
                x_param="timed_names",
                x_label="timed names in the LatencyRecorder",
                log_y=False,
            )
        ],
    )
    report.measurements += _dedup_group(number // 4, repeat)
    report.measurements += _history_group(number, repeat)
    report.measurements += _writer_group(number, repeat)
    report.measurements += _latency_group(number, repeat)
    report.measurements += _scrape_groups(scrapes, repeat)
    for measurement in report.measurements:
        if measurement.implementation == ALONE:
            saved = report.find(measurement.group, BASELINE).median - measurement.median
            report.notes.append(f"{measurement.group}: botperf saves {saved:.0f} ns per event")
    report.notes.append(
        f"scrapes read {SAMPLES_PER_NAME} lognormal durations per timed name; "
        "the Summary objects of the baseline keep only _count and _sum"
    )
    return report
