from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from botperf import (
    BatchMetricsWriter,
    InvalidOptionError,
    JsonLinesFileSink,
    MetricsNotWrittenError,
    MetricsSink,
    MetricsWriteError,
    WriterStats,
    read_metrics,
)

#: Safety net for waits on another thread; never reached when the code works.
SAFETY_TIMEOUT = 10.0
#: A max_delay so long that no timer flush can happen during a test.
NEVER = 3600.0


class RecordingSink:
    """A sink that keeps its batches, can fail its first writes, and can be waited on."""

    def __init__(self, *, fail_times: int = 0) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.threads: set[int] = set()
        self.closed = 0
        self.failures_left = fail_times
        self._changed = threading.Condition()

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        with self._changed:
            self.threads.add(threading.get_ident())
            if self.failures_left:
                self.failures_left -= 1
                raise OSError(28, "No space left on device")
            self.batches.append(events)
            self._changed.notify_all()

    def close(self) -> None:
        self.closed += 1

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._changed:
            return [event for batch in self.batches for event in batch]

    def wait_for_events(self, count: int) -> None:
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: sum(map(len, self.batches)) >= count, SAFETY_TIMEOUT
            )
        assert arrived, f"only {sum(map(len, self.batches))} of {count} events were written"


def names(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


def record_then_close(metrics: BatchMetricsWriter, count: int) -> None:
    with metrics:
        for number in range(count):
            metrics.record("tick", number=number)


async def record_then_aclose(metrics: BatchMetricsWriter, count: int) -> None:
    async with metrics:
        for number in range(count):
            metrics.record("tick", number=number)


def assert_consistent(stats: WriterStats) -> None:
    assert stats.recorded == stats.written + stats.dropped + stats.waiting + stats.unwritten


# -- lines ---------------------------------------------------------------------------


def test_each_line_holds_ts_event_then_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    before = time.time()
    with BatchMetricsWriter(path) as metrics:
        metrics.record("llm_call", channel=123, latency_ms=812.5, tokens=240)
    after = time.time()
    [event] = read_metrics(path)
    assert list(event) == ["ts", "event", "channel", "latency_ms", "tokens"]
    assert before <= event["ts"] <= after
    assert event == {
        "ts": event["ts"],
        "event": "llm_call",
        "channel": 123,
        "latency_ms": 812.5,
        "tokens": 240,
    }


@pytest.mark.parametrize("field", ["ts", "event"])
def test_reserved_field_names_are_refused(field: str) -> None:
    metrics = BatchMetricsWriter(RecordingSink())
    with pytest.raises(ValueError, match=f"the field name '{field}' is reserved"):
        metrics.record("x", **{field: 1})
    assert metrics.stats.recorded == 0


# -- async with ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_with_writes_every_event_in_order_at_close() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(sink, max_batch=4, max_delay=NEVER) as metrics:
        for number in range(10):
            metrics.record("tick", number=number)
    assert [event["number"] for event in sink.events] == list(range(10))
    assert sink.closed == 1


@pytest.mark.anyio
async def test_full_batch_is_written_without_waiting_for_max_delay() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(sink, max_batch=3, max_delay=NEVER) as metrics:
        for number in range(3):
            metrics.record("tick", number=number)
        await anyio.to_thread.run_sync(sink.wait_for_events, 3)
        assert [len(batch) for batch in sink.batches] == [3]


@pytest.mark.anyio
async def test_partial_batch_waits_while_max_delay_has_not_passed() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(sink, max_batch=3, max_delay=NEVER) as metrics:
        metrics.record("tick")
        await anyio.wait_all_tasks_blocked()
        assert sink.batches == []
        assert metrics.stats.waiting == 1


@pytest.mark.anyio
async def test_partial_batch_is_written_once_max_delay_has_passed() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(sink, max_batch=100, max_delay=0.01) as metrics:
        metrics.record("lonely")
        await anyio.to_thread.run_sync(sink.wait_for_events, 1)
        assert metrics.stats.batches == 1


@pytest.mark.anyio
async def test_flush_writes_everything_recorded_so_far() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(sink, max_batch=4, max_delay=NEVER) as metrics:
        for number in range(6):
            metrics.record("tick", number=number)
        await metrics.flush()
        assert metrics.stats.written == 6
        assert [len(batch) for batch in sink.batches] == [4, 2]


@pytest.mark.anyio
async def test_writes_run_in_worker_threads_not_on_the_event_loop() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(sink, max_batch=2, max_delay=0.01) as metrics:
        for _ in range(5):
            metrics.record("tick")
        await anyio.to_thread.run_sync(sink.wait_for_events, 4)
        await metrics.flush()
    assert sink.threads
    assert threading.get_ident() not in sink.threads


@pytest.mark.anyio
async def test_write_calls_are_events_over_max_batch_rounded_up() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(sink, max_batch=50, max_delay=NEVER) as metrics:
        for number in range(120):
            metrics.record("tick", number=number)
            if number % 10 == 0:
                await anyio.lowlevel.checkpoint()
    assert [len(batch) for batch in sink.batches] == [50, 50, 20]
    assert metrics.stats.batches == 3


@pytest.mark.anyio
async def test_record_from_another_thread_wakes_the_async_flusher() -> None:
    sink = RecordingSink()

    def record_batch(metrics: BatchMetricsWriter) -> None:
        for number in range(3):
            metrics.record("from_thread", number=number)

    async with BatchMetricsWriter(sink, max_batch=3, max_delay=NEVER) as metrics:
        await anyio.to_thread.run_sync(record_batch, metrics)
        await anyio.to_thread.run_sync(sink.wait_for_events, 3)
        assert len(sink.batches) == 1


@pytest.mark.anyio
async def test_a_full_batch_wakes_the_flusher_when_two_appends_race_past_max_batch() -> None:
    sink = RecordingSink()
    metrics = BatchMetricsWriter(sink, max_batch=3, max_delay=NEVER)

    class OtherThreadAppendsInBetween(deque[Any]):
        """Lets another thread's record() run whole between this append and its len()."""

        def append(self, entry: Any) -> None:
            super().append(entry)
            if entry[1] == "third":
                other = threading.Thread(target=metrics.record, args=("fourth",))
                other.start()
                other.join()

    metrics._queue = OtherThreadAppendsInBetween()  # white-box: forces the interleaving
    async with metrics:
        metrics.record("first")
        metrics.record("second")
        await anyio.wait_all_tasks_blocked()  # the flusher waits for a wake-up
        metrics.record("third")  # both appends read 4 waiting: neither saw exactly 3
        await anyio.to_thread.run_sync(sink.wait_for_events, 3)
        assert names(sink.batches[0]) == ["first", "second", "third"]


@pytest.mark.anyio
async def test_events_recorded_before_entering_are_written() -> None:
    sink = RecordingSink()
    metrics = BatchMetricsWriter(sink, max_batch=2, max_delay=NEVER)
    metrics.record("early", number=1)
    metrics.record("early", number=2)
    async with metrics:
        await anyio.to_thread.run_sync(sink.wait_for_events, 2)
    assert names(sink.events) == ["early", "early"]


@pytest.mark.anyio
async def test_body_exception_propagates_after_events_are_written() -> None:
    sink = RecordingSink()

    async def crash_inside() -> None:
        async with BatchMetricsWriter(sink, max_delay=NEVER) as metrics:
            metrics.record("before_crash")
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        await crash_inside()
    assert names(sink.events) == ["before_crash"]


@pytest.mark.anyio
async def test_cancelling_the_owner_still_writes_what_was_recorded() -> None:
    sink = RecordingSink()
    recorded = anyio.Event()

    async def use_writer() -> None:
        async with BatchMetricsWriter(sink, max_delay=NEVER) as metrics:
            metrics.record("cancelled_soon")
            recorded.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(use_writer)
        await recorded.wait()
        task_group.cancel_scope.cancel()
    assert names(sink.events) == ["cancelled_soon"]


@pytest.mark.anyio
async def test_flush_sync_on_the_event_loop_thread_is_refused() -> None:
    async with BatchMetricsWriter(RecordingSink()) as metrics:
        with pytest.raises(RuntimeError, match=r"await writer\.flush"):
            metrics.flush_sync()


@pytest.mark.anyio
async def test_block_policy_refuses_to_block_the_event_loop() -> None:
    sink = RecordingSink()
    async with BatchMetricsWriter(
        sink, max_batch=2, max_buffer=2, on_full="block", max_delay=NEVER
    ) as metrics:
        metrics.record("a")
        metrics.record("b")
        with pytest.raises(RuntimeError, match="on the event loop thread"):
            metrics.record("c")
    assert names(sink.events) == ["a", "b"]


# -- with ----------------------------------------------------------------------------


def test_with_writes_from_sync_code_through_a_background_thread() -> None:
    sink = RecordingSink()
    with BatchMetricsWriter(sink, max_batch=2, max_delay=NEVER) as metrics:
        for number in range(4):
            metrics.record("sync", number=number)
        sink.wait_for_events(4)
    assert [len(batch) for batch in sink.batches] == [2, 2]
    assert threading.get_ident() not in sink.threads


def test_with_writes_a_partial_batch_after_max_delay() -> None:
    sink = RecordingSink()
    with BatchMetricsWriter(sink, max_batch=100, max_delay=0.01) as metrics:
        metrics.record("lonely")
        sink.wait_for_events(1)


def test_flush_sync_writes_everything_recorded_so_far() -> None:
    sink = RecordingSink()
    with BatchMetricsWriter(sink, max_batch=10, max_delay=NEVER) as metrics:
        metrics.record("a")
        metrics.record("b")
        metrics.flush_sync()
        assert names(sink.events) == ["a", "b"]


def test_record_from_many_threads_at_once_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    threads, per_thread = 8, 2_000
    start = threading.Barrier(threads)

    def record_many(metrics: BatchMetricsWriter, worker: int) -> None:
        start.wait()
        for number in range(per_thread):
            metrics.record("work", worker=worker, number=number)

    with BatchMetricsWriter(path, max_batch=64, max_buffer=threads * per_thread) as metrics:
        workers = [
            threading.Thread(target=record_many, args=(metrics, worker))
            for worker in range(threads)
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    events = list(read_metrics(path))
    assert metrics.stats.written == len(events) == threads * per_thread
    for worker in range(threads):
        numbers = [event["number"] for event in events if event["worker"] == worker]
        assert numbers == list(range(per_thread))


@pytest.mark.anyio
async def test_record_from_many_threads_into_an_async_writer_loses_nothing() -> None:
    sink = RecordingSink()

    def record_many(metrics: BatchMetricsWriter, worker: int) -> None:
        for number in range(500):
            metrics.record("work", worker=worker, number=number)

    async with (
        BatchMetricsWriter(sink, max_batch=16, max_delay=0.01) as metrics,
        anyio.create_task_group() as task_group,
    ):
        for worker in range(4):
            task_group.start_soon(anyio.to_thread.run_sync, record_many, metrics, worker)
    for worker in range(4):
        numbers = [event["number"] for event in sink.events if event["worker"] == worker]
        assert numbers == list(range(500))


def test_an_event_recorded_while_the_final_drain_runs_is_written() -> None:
    batches: list[list[dict[str, Any]]] = []

    def sink_that_records(events: list[dict[str, Any]]) -> None:
        batches.append(events)
        if names(events) == ["first"]:
            metrics.record("during_close")

    metrics = BatchMetricsWriter(sink_that_records, max_delay=NEVER)
    with metrics:
        metrics.record("first")
    assert [names(batch) for batch in batches] == [["first"], ["during_close"]]


def test_record_racing_close_returns_normally_when_the_final_drain_wrote_its_event() -> None:
    sink = RecordingSink()
    metrics = BatchMetricsWriter(sink, max_delay=NEVER)

    class CloseRunsAfterAppend(deque[Any]):
        """Lets the closing thread run its final drain between record()'s append and check."""

        def append(self, entry: Any) -> None:
            super().append(entry)
            if entry[1] == "late":
                closer = threading.Thread(target=metrics._close_blocking)
                closer.start()
                closer.join()

    metrics._queue = CloseRunsAfterAppend()  # white-box: forces the interleaving
    with metrics:
        metrics.record("early")
        metrics._stop_accepting()  # what closing does first, on the closing thread
        metrics.record("late")  # must not raise: its event is written
    assert names(sink.events) == ["early", "late"]
    assert metrics.stats.written == metrics.stats.recorded == 2


def test_block_policy_waits_for_room_and_loses_nothing() -> None:
    sink = RecordingSink()

    def produce(metrics: BatchMetricsWriter) -> None:
        for number in range(200):
            metrics.record("tick", number=number)

    with BatchMetricsWriter(
        sink, max_batch=2, max_buffer=2, on_full="block", max_delay=0.001
    ) as metrics:
        producer = threading.Thread(target=produce, args=(metrics,))
        producer.start()
        producer.join()
    assert [event["number"] for event in sink.events] == list(range(200))
    assert metrics.stats.dropped == 0


def test_block_policy_before_entering_is_refused() -> None:
    metrics = BatchMetricsWriter(RecordingSink(), max_batch=1, max_buffer=1, on_full="block")
    metrics.record("fits")
    with pytest.raises(RuntimeError, match="before the writer is entered"):
        metrics.record("does_not_fit")


def test_closing_wakes_a_blocked_recorder_with_an_error() -> None:
    release = threading.Event()

    def stuck_sink(events: list[dict[str, Any]]) -> None:
        release.wait(SAFETY_TIMEOUT)

    errors: list[RuntimeError] = []
    metrics = BatchMetricsWriter(stuck_sink, max_batch=1, max_buffer=1, on_full="block")

    def produce() -> None:
        try:
            for _ in range(3):
                metrics.record("tick")
        except RuntimeError as exc:
            errors.append(exc)
        release.set()

    with metrics:
        producer = threading.Thread(target=produce)
        producer.start()
        deadline = time.monotonic() + SAFETY_TIMEOUT
        while metrics._blocked == 0 and time.monotonic() < deadline:  # white-box: it waits
            time.sleep(0.001)
    producer.join(SAFETY_TIMEOUT)
    assert len(errors) == 1
    assert "closed while record() waited for room" in str(errors[0])


# -- drops ---------------------------------------------------------------------------


def test_drop_oldest_keeps_the_newest_events_and_counts_the_rest() -> None:
    sink = RecordingSink()
    metrics = BatchMetricsWriter(sink, max_batch=3, max_buffer=3, max_delay=NEVER)
    for number in range(5):
        metrics.record("tick", number=number)
    with metrics:
        pass
    assert [event["number"] for event in sink.events] == [2, 3, 4]
    assert metrics.stats.dropped == 2
    assert_consistent(metrics.stats)


def test_drop_new_keeps_the_oldest_events_and_counts_the_rest() -> None:
    sink = RecordingSink()
    metrics = BatchMetricsWriter(
        sink, max_batch=3, max_buffer=3, on_full="drop_new", max_delay=NEVER
    )
    for number in range(5):
        metrics.record("tick", number=number)
    with metrics:
        pass
    assert [event["number"] for event in sink.events] == [0, 1, 2]
    assert metrics.stats.dropped == 2
    assert metrics.stats.recorded == 5


def test_drop_oldest_spares_a_batch_kept_for_retry() -> None:
    sink = RecordingSink(fail_times=1)
    metrics = BatchMetricsWriter(sink, max_batch=2, max_buffer=2, max_delay=NEVER)
    metrics.record("kept", number=0)
    metrics.record("kept", number=1)
    with pytest.raises(MetricsWriteError):
        metrics.flush_sync()
    metrics.record("dropped")
    with metrics:
        pass
    assert names(sink.events) == ["kept", "kept"]
    assert metrics.stats.dropped == 1


def test_a_burst_of_drops_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = BatchMetricsWriter(RecordingSink(), max_batch=1, max_buffer=1, max_delay=NEVER)
    with caplog.at_level(logging.WARNING, logger="botperf"):
        for _ in range(5):
            metrics.record("tick")
        metrics.flush_sync()
    drops = [record for record in caplog.records if "dropped" in record.getMessage()]
    assert len(drops) == 1
    assert "dropped 4 metric events" in drops[0].getMessage()


# -- failures ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_failed_writes_are_retried_until_written_in_order() -> None:
    sink = RecordingSink(fail_times=3)
    async with BatchMetricsWriter(
        sink, max_batch=2, max_delay=NEVER, retry_delay=0.001, max_retry_delay=0.002
    ) as metrics:
        for number in range(4):
            metrics.record("tick", number=number)
        await anyio.to_thread.run_sync(sink.wait_for_events, 4)
        stats = metrics.stats
    assert [event["number"] for event in sink.events] == [0, 1, 2, 3]
    assert stats.failed_writes == 3
    assert stats.batches == 2


def test_a_failed_write_is_logged_with_its_retry(caplog: pytest.LogCaptureFixture) -> None:
    metrics = BatchMetricsWriter(RecordingSink(fail_times=1), max_delay=NEVER)
    metrics.record("tick")
    with caplog.at_level(logging.WARNING, logger="botperf"), pytest.raises(MetricsWriteError):
        metrics.flush_sync()
    assert "could not write 1 metric events" in caplog.text
    assert "retrying in 0.5 s" in caplog.text


def test_flush_raises_when_a_write_fails_and_keeps_the_batch() -> None:
    sink = RecordingSink(fail_times=1)
    metrics = BatchMetricsWriter(sink, max_delay=NEVER)
    metrics.record("tick")
    with pytest.raises(MetricsWriteError, match="1 events wait") as info:
        metrics.flush_sync()
    assert info.value.waiting == 1
    assert metrics.stats.waiting == 1
    metrics.flush_sync()
    assert names(sink.events) == ["tick"]
    assert_consistent(metrics.stats)


def test_a_retry_gets_new_events_whatever_the_failed_attempt_did_to_them() -> None:
    attempts: list[list[dict[str, Any]]] = []

    def mutates_then_fails_once(events: list[dict[str, Any]]) -> None:
        attempts.append([dict(event) for event in events])
        for event in events:
            event["ts"] = "converted in place"
        events.append({"event": "added by the sink"})
        if len(attempts) == 1:
            raise ConnectionError("transient network error")

    metrics = BatchMetricsWriter(mutates_then_fails_once, max_delay=NEVER)
    metrics.record("tick", number=1)
    with pytest.raises(MetricsWriteError):
        metrics.flush_sync()
    metrics.flush_sync()
    assert len(attempts) == 2
    assert attempts[1] == attempts[0]
    assert isinstance(attempts[1][0]["ts"], float)
    assert names(attempts[1]) == ["tick"]
    # The event the sink added to its list is not one the writer recorded or wrote.
    assert (metrics.stats.written, metrics.stats.waiting) == (1, 0)
    assert_consistent(metrics.stats)


#: Past the 1,024th failure in a row, where 2 ** (failures - 1) no longer fits a float.
LONG_OUTAGE = 2_000


class OutageSink(RecordingSink):
    """Fails its first ``fail_times`` writes (forever by default), and counts attempts."""

    def __init__(self, *, fail_times: int = 10**9) -> None:
        super().__init__(fail_times=fail_times)
        self.attempts = 0

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        with self._changed:
            self.attempts += 1
            self._changed.notify_all()
        super().write_batch(events)

    def wait_for_attempts(self, count: int) -> None:
        with self._changed:
            arrived = self._changed.wait_for(lambda: self.attempts >= count, SAFETY_TIMEOUT)
        assert arrived, f"only {self.attempts} of {count} write attempts were made"


def test_retry_delay_doubles_up_to_max_retry_delay_through_thousands_of_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = OutageSink(fail_times=LONG_OUTAGE)
    metrics = BatchMetricsWriter(sink, max_delay=NEVER)
    metrics.record("tick")
    with caplog.at_level(logging.WARNING, logger="botperf"):
        for _ in range(LONG_OUTAGE):
            with pytest.raises(MetricsWriteError, match="1 events wait"):
                metrics.flush_sync()
    delays = [
        float(record.getMessage().rsplit("retrying in ", 1)[1].removesuffix(" s"))
        for record in caplog.records
        if "retrying in" in record.getMessage()
    ]
    assert len(delays) == LONG_OUTAGE
    assert delays[:9] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]  # the default max_retry_delay
    assert set(delays[7:]) == {60}
    metrics.flush_sync()  # the outage is over: the kept batch is written
    assert names(sink.events) == ["tick"]
    assert metrics.stats.failed_writes == LONG_OUTAGE
    assert_consistent(metrics.stats)


def test_the_default_max_retry_delay_is_a_minute() -> None:
    BatchMetricsWriter(RecordingSink(), retry_delay=60.0)  # up to the default cap: accepted
    with pytest.raises(InvalidOptionError, match=r"at least retry_delay \(60.5 seconds\)"):
        BatchMetricsWriter(RecordingSink(), retry_delay=60.5)


def test_the_flusher_thread_keeps_retrying_through_a_long_outage() -> None:
    sink = OutageSink(fail_times=LONG_OUTAGE)
    with BatchMetricsWriter(
        sink, max_batch=1, max_delay=NEVER, retry_delay=1e-6, max_retry_delay=1e-6
    ) as metrics:
        metrics.record("tick")
        sink.wait_for_events(1)
    assert sink.attempts == LONG_OUTAGE + 1
    assert names(sink.events) == ["tick"]


def test_close_after_a_long_outage_raises_metrics_not_written(tmp_path: Path) -> None:
    sink = OutageSink()
    saved = tmp_path / "unwritten.jsonl"
    metrics = BatchMetricsWriter(
        sink,
        max_batch=1,
        max_delay=NEVER,
        retry_delay=1e-6,
        max_retry_delay=1e-6,
        unwritten_path=saved,
    )

    def record_through_the_outage() -> None:
        with metrics:
            metrics.record("tick")
            sink.wait_for_attempts(LONG_OUTAGE)

    with pytest.raises(MetricsNotWrittenError, match="1 metric events") as info:
        record_through_the_outage()
    assert info.value.saved_to == str(saved)
    assert names(list(read_metrics(saved))) == ["tick"]


@pytest.mark.anyio
async def test_a_long_outage_never_cancels_the_code_inside_async_with() -> None:
    written = anyio.Event()

    class RecoveringSink(OutageSink):
        def write_batch(self, events: list[dict[str, Any]]) -> None:
            super().write_batch(events)
            anyio.from_thread.run_sync(written.set)  # the flusher's worker thread

    sink = RecoveringSink(fail_times=LONG_OUTAGE)
    body_finished = False
    async with BatchMetricsWriter(
        sink, max_batch=1, max_delay=NEVER, retry_delay=1e-6, max_retry_delay=1e-6
    ) as metrics:
        metrics.record("tick")
        with anyio.fail_after(SAFETY_TIMEOUT):
            await written.wait()
        body_finished = True
    assert body_finished
    assert sink.attempts == LONG_OUTAGE + 1
    assert names(sink.events) == ["tick"]


@pytest.mark.anyio
async def test_a_sink_and_failure_whose_repr_raises_end_in_metrics_not_written(
    tmp_path: Path,
) -> None:
    class Unprintable(Exception):
        def __repr__(self) -> str:
            raise RuntimeError("repr failed")

    class UnprintableSink(OutageSink):
        def __repr__(self) -> str:
            raise RuntimeError("repr failed")

        def write_batch(self, events: list[dict[str, Any]]) -> None:
            with self._changed:
                self.attempts += 1
                self._changed.notify_all()
            raise Unprintable

    sink = UnprintableSink()
    saved = tmp_path / "unwritten.jsonl"
    metrics = BatchMetricsWriter(
        sink,
        max_batch=1,
        max_delay=NEVER,
        retry_delay=1e-6,
        max_retry_delay=1e-6,
        unwritten_path=saved,
    )
    body_finished: list[bool] = []

    async def record_through_failures() -> None:
        async with metrics:
            metrics.record("tick")
            await anyio.to_thread.run_sync(sink.wait_for_attempts, 3)
            body_finished.append(True)

    with pytest.raises(MetricsNotWrittenError, match="<unrepresentable UnprintableSink>") as info:
        await record_through_failures()
    assert body_finished == [True]
    assert info.value.saved_to == str(saved)
    assert names(list(read_metrics(saved))) == ["tick"]


def test_close_saves_unwritten_events_beside_the_file_and_raises(tmp_path: Path) -> None:
    directory = tmp_path / "m.jsonl"
    directory.mkdir()  # a path that is a directory cannot be opened for writing
    metrics = BatchMetricsWriter(directory, max_delay=NEVER)
    with pytest.raises(
        MetricsNotWrittenError, match="3 metric events could not be written"
    ) as info:
        record_then_close(metrics, 3)
    saved = tmp_path / "m.jsonl.unwritten.jsonl"
    assert info.value.saved_to == str(saved)
    assert info.value.count == 3
    assert [event["number"] for event in read_metrics(saved)] == [0, 1, 2]
    assert metrics.stats.unwritten == 3
    assert_consistent(metrics.stats)


def test_an_interrupt_during_the_final_write_saves_the_batch_and_propagates(
    tmp_path: Path,
) -> None:
    def interrupted(events: list[dict[str, Any]]) -> None:
        raise KeyboardInterrupt  # Ctrl-C landing while the sink writes

    saved = tmp_path / "unwritten.jsonl"
    metrics = BatchMetricsWriter(interrupted, max_delay=NEVER, unwritten_path=saved)
    with pytest.raises(KeyboardInterrupt):
        record_then_close(metrics, 3)
    assert [event["number"] for event in read_metrics(saved)] == [0, 1, 2]
    assert metrics.stats.unwritten == 3
    assert metrics.stats.waiting == 0
    assert_consistent(metrics.stats)


def test_an_interrupt_during_flush_sync_keeps_the_batch_for_the_next_write() -> None:
    sink = RecordingSink()
    interrupts = [KeyboardInterrupt()]

    class InterruptedOnce(RecordingSink):
        def write_batch(self, events: list[dict[str, Any]]) -> None:
            if interrupts:
                raise interrupts.pop()
            sink.write_batch(events)

    metrics = BatchMetricsWriter(InterruptedOnce(), max_delay=NEVER)
    metrics.record("a")
    metrics.record("b")
    with pytest.raises(KeyboardInterrupt):
        metrics.flush_sync()
    assert metrics.stats.waiting == 2
    metrics.flush_sync()
    assert names(sink.events) == ["a", "b"]
    assert metrics.stats.written == 2


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only directories"
)
def test_read_only_directory_is_a_failed_write(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        metrics = BatchMetricsWriter(tmp_path / "m.jsonl", unwritten_path=tmp_path / "u")
        metrics.record("tick")
        with pytest.raises(MetricsWriteError, match="Permission denied"):
            metrics.flush_sync()
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.anyio
async def test_async_close_saves_unwritten_events_of_a_custom_sink(tmp_path: Path) -> None:
    saved = tmp_path / "unwritten.jsonl"
    metrics = BatchMetricsWriter(
        RecordingSink(fail_times=99), max_delay=NEVER, unwritten_path=saved
    )
    with pytest.raises(MetricsNotWrittenError) as info:
        await record_then_aclose(metrics, 1)
    assert info.value.saved_to == str(saved)
    assert [event["number"] for event in read_metrics(saved)] == [0]


@pytest.mark.parametrize(
    ("end", "kept"),
    [
        pytest.param(b'{"ts":2.0,"ev', [], id="torn line"),
        pytest.param(b'{"ts":2.0,"event":"tick","number":-2}', [-2], id="whole, no newline"),
    ],
)
def test_a_save_never_glues_onto_the_last_line_of_the_unwritten_file(
    tmp_path: Path, end: bytes, kept: list[int]
) -> None:
    saved = tmp_path / "unwritten.jsonl"
    saved.write_bytes(b'{"ts":1.0,"event":"tick","number":-1}\n' + end)  # a killed save
    metrics = BatchMetricsWriter(RecordingSink(fail_times=99), unwritten_path=saved)
    with pytest.raises(MetricsNotWrittenError, match="they were saved to") as info:
        record_then_close(metrics, 3)
    assert [event["number"] for event in read_metrics(saved)] == [-1, *kept, 0, 1, 2]
    assert (info.value.count, info.value.saved) == (3, 3)


def test_close_says_when_saving_unwritten_events_failed_too(tmp_path: Path) -> None:
    nowhere = tmp_path / "missing-directory" / "unwritten.jsonl"
    metrics = BatchMetricsWriter(RecordingSink(fail_times=99), unwritten_path=nowhere)
    with pytest.raises(MetricsNotWrittenError, match=r"failed too .* so they are lost") as info:
        record_then_close(metrics, 1)
    assert info.value.saved_to is None


def test_close_reports_unwritten_events_it_could_not_encode_for_saving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def encoding_fails(events: object, encoder: object) -> None:
        raise RuntimeError("cannot encode")

    monkeypatch.setattr("botperf._metrics.encode_batch", encoding_fails)
    saved = tmp_path / "unwritten.jsonl"
    metrics = BatchMetricsWriter(RecordingSink(fail_times=99), unwritten_path=saved)
    with pytest.raises(MetricsNotWrittenError, match=r"cannot encode.* so they are lost") as info:
        record_then_close(metrics, 2)
    assert info.value.count == 2
    assert info.value.saved_to is None
    assert not saved.exists()
    assert metrics.stats.unwritten == 2
    assert_consistent(metrics.stats)


def test_a_field_whose_repr_raises_does_not_poison_its_batch(tmp_path: Path) -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("repr failed")

    path = tmp_path / "m.jsonl"
    with BatchMetricsWriter(path) as metrics:
        metrics.record("good", number=1)
        metrics.record("bad", value=Weird())
        metrics.record("good", number=2)
    assert [event.get("value") for event in read_metrics(path)] == [
        None,
        "<unrepresentable Weird>",
        None,
    ]
    assert (metrics.stats.written, metrics.stats.repr_values) == (3, 1)


def test_default_unwritten_file_of_a_custom_sink_is_in_the_temp_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    metrics = BatchMetricsWriter(RecordingSink(fail_times=99))
    with pytest.raises(MetricsNotWrittenError) as info:
        record_then_close(metrics, 1)
    assert info.value.saved_to is not None
    assert Path(info.value.saved_to).parent == tmp_path
    assert info.value.saved_to.endswith(".unwritten.jsonl")


def test_sink_close_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class BadClose(RecordingSink):
        def close(self) -> None:
            raise OSError("already gone")

    with caplog.at_level(logging.WARNING, logger="botperf"), BatchMetricsWriter(BadClose()):
        pass
    assert "closing the metrics sink" in caplog.text


# -- sinks and lifecycle -------------------------------------------------------------


def test_a_function_receives_each_batch_as_event_dicts() -> None:
    batches: list[list[dict[str, Any]]] = []
    with BatchMetricsWriter(batches.append, max_batch=2, max_delay=NEVER) as metrics:
        metrics.record("a", value=1)
        metrics.record("b", value=2)
        metrics.record("c", value=3)
    assert [names(batch) for batch in batches] == [["a", "b"], ["c"]]
    assert batches[0][1]["value"] == 2


def test_a_function_sink_is_named_in_error_messages() -> None:
    def ship_to_service(events: list[dict[str, Any]]) -> None:
        raise ConnectionError("unreachable")

    metrics = BatchMetricsWriter(ship_to_service, max_delay=NEVER)
    metrics.record("tick")
    with pytest.raises(MetricsWriteError, match=r"to <function sink \S*ship_to_service>"):
        metrics.flush_sync()
    assert "object at 0x" not in repr(metrics)


def test_a_nameless_callable_sink_is_described_by_its_repr() -> None:
    metrics = BatchMetricsWriter(functools.partial(print, end=""))
    assert "<function sink functools.partial(<built-in function print>" in repr(metrics)


def test_stats_is_a_frozen_snapshot_without_an_instance_dict() -> None:
    stats = BatchMetricsWriter(RecordingSink()).stats
    assert not hasattr(stats, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.recorded = 1  # type: ignore[misc]


def test_a_custom_sink_is_a_metrics_sink_and_is_closed_once() -> None:
    sink = RecordingSink()
    assert isinstance(sink, MetricsSink)
    with BatchMetricsWriter(sink) as metrics:
        assert metrics.sink is sink
    assert sink.closed == 1


def test_a_path_gets_a_json_lines_file_sink(tmp_path: Path) -> None:
    metrics = BatchMetricsWriter(tmp_path / "m.jsonl", encoder="json")
    assert isinstance(metrics.sink, JsonLinesFileSink)
    assert metrics.sink.encoder == "json"
    assert "m.jsonl" in repr(metrics)


def test_record_after_close_is_refused() -> None:
    with BatchMetricsWriter(RecordingSink()) as metrics:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        metrics.record("late")
    assert metrics.stats.recorded == 0


def test_a_writer_is_entered_once() -> None:
    metrics = BatchMetricsWriter(RecordingSink())
    with metrics:
        pass
    with pytest.raises(RuntimeError, match="entered once"), metrics:
        pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 0}, r"\(max_batch=0\): max_batch must be an int of at least 1"),
        ({"max_batch": 2.5}, r"\(max_batch=2.5\): max_batch must be an int of at least 1"),
        ({"max_batch": True}, "max_batch must be an int of at least 1"),
        ({"max_delay": 0}, "max_delay must be a finite number of seconds, above 0"),
        ({"max_delay": float("inf")}, "max_delay must be a finite number of seconds"),
        ({"max_delay": "60"}, "max_delay must be a finite number of seconds"),
        ({"max_buffer": 1.5e4}, "max_buffer must be an int of at least 1"),
        (
            {"max_batch": 10, "max_buffer": 5},
            r"max_buffer must be an int of at least max_batch \(10\)",
        ),
        ({"on_full": "explode"}, "on_full must be one of 'drop_oldest', 'drop_new', 'block'"),
        ({"retry_delay": 0}, "retry_delay must be a finite number of seconds, above 0"),
        ({"max_retry_delay": float("nan")}, "max_retry_delay must be a finite number"),
        ({"retry_delay": 2, "max_retry_delay": 1}, r"at least retry_delay \(2 seconds\)"),
        ({"rotate_bytes": 0}, "rotate_bytes must be an int of at least 1"),
        ({"rotate_bytes": 1e6}, "rotate_bytes must be an int of at least 1"),
        ({"backups": 0}, "backups must be an int of at least 1"),
        ({"backups": 2.0}, "backups must be an int of at least 1"),
        ({"encoder": "pickle"}, "encoder must be one of 'auto', 'json', 'orjson'"),
    ],
)
def test_bad_options_fail_at_construction(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidOptionError, match=message) as info:
        BatchMetricsWriter(tmp_path / "m.jsonl", **options)
    assert info.value.owner == "BatchMetricsWriter"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rotate_bytes": -1}, "rotate_bytes must be an int of at least 1"),
        ({"backups": None}, "backups must be an int of at least 1"),
        ({"encoder": "yaml"}, "encoder must be one of 'auto', 'json', 'orjson'"),
    ],
)
def test_bad_file_sink_options_fail_at_construction(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidOptionError, match=rf"JsonLinesFileSink\(.*{message}"):
        JsonLinesFileSink(tmp_path / "m.jsonl", **options)


@pytest.mark.parametrize("options", [{"rotate_bytes": 100}, {"fsync": True}, {"encoder": "json"}])
def test_file_options_with_a_sink_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidOptionError, match="apply to a file path"):
        BatchMetricsWriter(RecordingSink(), **options)


def test_a_target_that_is_no_sink_is_refused() -> None:
    with pytest.raises(TypeError, match="not int"):
        BatchMetricsWriter(42)  # type: ignore[arg-type]
