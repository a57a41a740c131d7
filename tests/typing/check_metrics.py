"""Checked by ``mypy --strict``: the typed API of BatchMetricsWriter is a contract."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from botperf import (
    BatchMetricsWriter,
    JsonLinesFileSink,
    MetricsNotWrittenError,
    MetricsSink,
    MetricsWriteError,
    WriterStats,
)
from botperf._metrics import OnFull


def ship(events: list[dict[str, Any]]) -> None:
    print(len(events))


class Sink:
    def write_batch(self, events: list[dict[str, Any]]) -> None:
        print(len(events))

    def close(self) -> None:
        print("closed")


def sync_use() -> None:
    policy: OnFull = "drop_new"
    with BatchMetricsWriter("metrics.jsonl", max_batch=10, on_full=policy) as metrics:
        assert_type(metrics, BatchMetricsWriter)
        assert_type(metrics.record("llm_call", channel=1, latency_ms=2.5), None)
        assert_type(metrics.flush_sync(), None)
        assert_type(metrics.stats, WriterStats)
        assert_type(metrics.stats.recorded, int)
        assert_type(metrics.sink, MetricsSink)


async def async_use() -> None:
    async with BatchMetricsWriter(Sink(), max_delay=1.0) as metrics:
        assert_type(metrics, BatchMetricsWriter)
        await metrics.flush()
    file_sink = JsonLinesFileSink("metrics.jsonl", rotate_bytes=1_000_000, backups=3, fsync=True)
    assert_type(file_sink.repr_values, int)
    BatchMetricsWriter(file_sink)
    writer = BatchMetricsWriter(ship, on_full="block", unwritten_path="saved.jsonl")
    try:
        async with writer:
            await writer.flush()
    except MetricsWriteError as exc:
        assert_type(exc.waiting, int)
    except MetricsNotWrittenError as exc:
        assert_type(exc.saved_to, str | None)
        assert_type(exc.count, int)


BatchMetricsWriter("metrics.jsonl", on_full="explode")  # type: ignore[arg-type]
BatchMetricsWriter("metrics.jsonl", encoder="pickle")  # type: ignore[arg-type]
