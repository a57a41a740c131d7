"""record() encodes for a file sink's flusher that falls behind (issue 20).

Past the high-water mark (40 batches waiting, at most ``max_buffer - max_batch``),
record() encodes the oldest ``max_batch`` events into lines itself, and the flusher
writes every chunk of lines waiting in one write. These tests hold the writer to the
same promises as the flusher's own path: order, accounting, retries, the save at close.
"""

from __future__ import annotations

import datetime
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botperf import BatchMetricsWriter, MetricsNotWrittenError, MetricsWriteError, read_metrics
from botperf._encoding import encode_entries
from botperf._metrics import OnFull

#: Safety net for waits on another thread; never reached when the code works.
SAFETY_TIMEOUT = 10.0
NEVER = 3600.0
#: With max_batch=5, record() starts encoding past 40 * 5 = 200 waiting events.
MAX_BATCH = 5
HIGH_WATER = 40 * MAX_BATCH


def numbers(path: Path) -> list[int]:
    return [event["number"] for event in read_metrics(path)]


def record(metrics: BatchMetricsWriter, count: int, first: int = 0, **fields: Any) -> None:
    for number in range(first, first + count):
        metrics.record("tick", number=number, **fields)


def assert_consistent(metrics: BatchMetricsWriter) -> None:
    stats = metrics.stats
    assert stats.recorded == stats.written + stats.dropped + stats.waiting + stats.unwritten


class RecordingSink:
    """A sink of event dicts that keeps its batches."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        self.batches.append(events)

    def close(self) -> None:
        """Nothing to release."""


def test_record_past_the_high_water_mark_encodes_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    metrics = BatchMetricsWriter(path, max_batch=MAX_BATCH, max_delay=NEVER)
    record(metrics, HIGH_WATER + 60)  # not entered: no flusher runs
    assert not path.exists()  # record() encoded 60 events, and wrote nothing
    stats = metrics.stats
    assert (stats.recorded, stats.waiting, stats.written) == (HIGH_WATER + 60, HIGH_WATER + 60, 0)
    assert_consistent(metrics)
    metrics.flush_sync()
    # The 60 encoded events went in one write; the 200 left in the queue in batches.
    assert metrics.stats.batches == 1 + HIGH_WATER // MAX_BATCH
    assert numbers(path) == list(range(HIGH_WATER + 60))


def test_lines_encoded_by_record_hold_ts_event_then_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    metrics = BatchMetricsWriter(path, max_batch=MAX_BATCH, max_delay=NEVER)
    before = time.time()
    for number in range(HIGH_WATER + MAX_BATCH):
        metrics.record("llm_call", channel=123, latency_ms=812.5, number=number)
    with metrics:
        pass
    events = list(read_metrics(path))
    assert [event["number"] for event in events] == list(range(HIGH_WATER + MAX_BATCH))
    for event in events:
        assert list(event) == ["ts", "event", "channel", "latency_ms", "number"]
        assert before <= event["ts"] <= time.time()


def test_other_sinks_get_batches_of_at_most_max_batch_event_dicts() -> None:
    sink = RecordingSink()
    metrics = BatchMetricsWriter(sink, max_batch=MAX_BATCH, max_delay=NEVER)
    record(metrics, HIGH_WATER + 60)
    metrics.flush_sync()
    assert [len(batch) for batch in sink.batches] == [MAX_BATCH] * ((HIGH_WATER + 60) // MAX_BATCH)
    assert [event["number"] for batch in sink.batches for event in batch] == list(
        range(HIGH_WATER + 60)
    )


def test_repr_values_of_encoded_lines_are_counted_once_written(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    metrics = BatchMetricsWriter(path, max_batch=MAX_BATCH, max_delay=NEVER)
    record(metrics, HIGH_WATER + 10, when=datetime.date(2024, 5, 1))
    assert metrics.stats.repr_values == 0  # encoded, not written yet
    with metrics:
        pass
    assert metrics.stats.repr_values == HIGH_WATER + 10
    assert {event["when"] for event in read_metrics(path)} == {"datetime.date(2024, 5, 1)"}


def test_a_write_of_encoded_lines_rotates_before_it_and_keeps_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    metrics = BatchMetricsWriter(
        path, max_batch=MAX_BATCH, max_delay=NEVER, rotate_bytes=2_000, backups=200
    )
    record(metrics, HIGH_WATER + 100)
    with metrics:
        pass
    files = sorted(tmp_path.glob("m.jsonl.*"), key=lambda file: -int(file.suffix[1:]))
    assert files  # it rotated
    assert [number for file in [*files, path] for number in numbers(file)] == list(
        range(HIGH_WATER + 100)
    )
    assert metrics.sink.rotations == len(files)  # type: ignore[attr-defined]


def test_events_left_after_a_burst_are_written_without_waiting_for_max_delay(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.jsonl"
    count = 3_000
    with BatchMetricsWriter(path, max_batch=2, max_delay=NEVER) as metrics:
        record(metrics, count)  # a burst that outruns the flusher: record() helps
        deadline = time.monotonic() + SAFETY_TIMEOUT
        while metrics.stats.written < count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert metrics.stats.written == count  # the flusher took the rest of the queue
    assert numbers(path) == list(range(count))


@pytest.mark.anyio
async def test_async_writer_keeps_order_across_encoded_and_flusher_batches(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.jsonl"
    count = 2_000
    async with BatchMetricsWriter(path, max_batch=2, max_delay=NEVER) as metrics:
        for number in range(count):
            metrics.record("tick", number=number)
            if number % 500 == 0:
                await anyio.sleep(0.001)  # let the flusher write some batches itself
    assert numbers(path) == list(range(count))
    stats = metrics.stats
    assert (stats.recorded, stats.written) == (count, count)
    assert stats.batches < count // 2  # chunks encoded by record() went out together


@pytest.mark.anyio
async def test_async_close_saves_encoded_lines_that_could_not_be_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "missing-directory" / "m.jsonl"  # every write fails to open it
    saved = tmp_path / "unwritten.jsonl"
    metrics = BatchMetricsWriter(
        path,
        max_batch=MAX_BATCH,
        max_delay=NEVER,
        retry_delay=NEVER,
        max_retry_delay=NEVER,
        unwritten_path=saved,
    )
    record(metrics, HIGH_WATER + 60)  # 60 encoded, 200 left in the queue
    with pytest.raises(MetricsNotWrittenError) as info:
        async with metrics:
            pass
    assert (info.value.count, info.value.saved) == (HIGH_WATER + 60, HIGH_WATER + 60)
    assert numbers(saved) == list(range(HIGH_WATER + 60))  # whole lines, in order
    stats = metrics.stats
    assert (stats.unwritten, stats.waiting, stats.written) == (HIGH_WATER + 60, 0, 0)
    assert_consistent(metrics)


def test_a_failed_write_of_encoded_lines_is_kept_and_retried_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "later"
    path = directory / "m.jsonl"
    metrics = BatchMetricsWriter(
        path, max_batch=MAX_BATCH, max_delay=NEVER, retry_delay=NEVER, max_retry_delay=NEVER
    )
    record(metrics, HIGH_WATER + 60)
    with (
        caplog.at_level(logging.WARNING, logger="botperf"),
        pytest.raises(MetricsWriteError) as info,
    ):
        metrics.flush_sync()
    assert info.value.waiting == HIGH_WATER + 60
    assert "could not write 60 metric events" in caplog.text  # the encoded ones, first
    record(metrics, 10, first=HIGH_WATER + 60)
    directory.mkdir()
    metrics.flush_sync()
    stats = metrics.stats
    assert (stats.failed_writes, stats.written, stats.waiting) == (1, HIGH_WATER + 70, 0)
    assert numbers(path) == list(range(HIGH_WATER + 70))


@settings(max_examples=40)
@given(
    per_thread=st.integers(min_value=0, max_value=400),
    threads=st.integers(min_value=1, max_value=4),
    max_batch=st.integers(min_value=1, max_value=4),
    extra_room=st.integers(min_value=0, max_value=400),
    on_full=st.sampled_from(["drop_oldest", "drop_new"]),
    flushes=st.booleans(),
)
def test_threads_racing_encoded_and_flusher_batches_lose_nothing_uncounted(
    per_thread: int, threads: int, max_batch: int, extra_room: int, on_full: OnFull, flushes: bool
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.jsonl"
        metrics = BatchMetricsWriter(
            path,
            max_batch=max_batch,
            max_buffer=max_batch + extra_room,
            on_full=on_full,
            max_delay=0.001,
        )
        start = threading.Barrier(threads + 1)
        snapshots_consistent: list[bool] = []

        def recorder(thread: int) -> None:
            start.wait(SAFETY_TIMEOUT)
            for number in range(per_thread):
                metrics.record("tick", thread=thread, number=number)
                if number % 97 == 0:
                    stats = metrics.stats
                    snapshots_consistent.append(
                        stats.recorded
                        == stats.written + stats.dropped + stats.waiting + stats.unwritten
                    )

        workers = [threading.Thread(target=recorder, args=(n,)) for n in range(threads)]
        with metrics:
            for worker in workers:
                worker.start()
            start.wait(SAFETY_TIMEOUT)
            if flushes:
                metrics.flush_sync()
            for worker in workers:
                worker.join(SAFETY_TIMEOUT)
        events = list(read_metrics(path)) if path.exists() else []
    written = [(event["thread"], event["number"]) for event in events]

    stats = metrics.stats
    assert all(snapshots_consistent)
    assert stats.recorded == threads * per_thread
    assert stats.recorded == stats.written + stats.dropped
    assert (stats.waiting, stats.unwritten) == (0, 0)
    assert len(written) == stats.written
    assert len(set(written)) == len(written)
    for thread in range(threads):  # each thread's events in the order it recorded them
        mine = [number for writer, number in written if writer == thread]
        assert mine == sorted(mine)


def interrupt_first_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the writer's next encoding of entries raise KeyboardInterrupt (Ctrl-C)."""
    calls = 0

    def encode(entries: Any, encoder: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt
        return encode_entries(entries, encoder)

    monkeypatch.setattr("botperf._metrics.encode_entries", encode)


def test_an_interrupt_while_record_encodes_puts_the_events_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    metrics = BatchMetricsWriter(path, max_batch=MAX_BATCH, max_delay=NEVER)
    record(metrics, HIGH_WATER)
    interrupt_first_encoding(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        metrics.record("tick", number=HIGH_WATER)  # past the mark: it encodes
    assert metrics.stats.recorded == metrics.stats.waiting == HIGH_WATER + 1
    record(metrics, 10, first=HIGH_WATER + 1)
    with metrics:
        pass
    assert numbers(path) == list(range(HIGH_WATER + 11))


def test_an_interrupt_while_the_flusher_encodes_keeps_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    metrics = BatchMetricsWriter(path, max_batch=MAX_BATCH, max_delay=NEVER)
    record(metrics, 12)
    interrupt_first_encoding(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        metrics.flush_sync()
    assert metrics.stats.waiting == 12
    with metrics:
        pass
    assert numbers(path) == list(range(12))
    assert_consistent(metrics)
