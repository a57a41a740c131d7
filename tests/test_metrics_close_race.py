"""Closing races writes from other threads: every recorded event is accounted for (issue 13)."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botperf import BatchMetricsWriter, MetricsNotWrittenError, MetricsWriteError, read_metrics
from botperf._metrics import OnFull

#: Safety net for waits on another thread; never reached when the code works.
SAFETY_TIMEOUT = 10.0
#: How long the slow close() waits for another thread's write to reach the sink. With
#: the fix no write can reach it while the writer closes, so close() waits this long.
CLOSE_GRACE = 0.3
NEVER = 3600.0


class SlowClosingSink:
    """The sink of issue 13: fails until closing starts, then lets one write through.

    ``close()`` is slow: it waits for another thread's write to arrive. Once closing
    has started, the first write succeeds; the next one stays in flight until the test
    says the close is over, then fails.
    """

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []
        self.closing = threading.Event()
        self.in_flight = threading.Event()
        self.close_over = threading.Event()
        self.writes_while_closing = 0
        self._lock = threading.Lock()

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        if not self.closing.is_set():
            raise ConnectionError("metrics service unreachable")
        with self._lock:
            self.writes_while_closing += 1
            first = self.writes_while_closing == 1
        if first:
            self.written.extend(events)
            return
        self.in_flight.set()
        self.close_over.wait(SAFETY_TIMEOUT)
        raise ConnectionError("metrics service unreachable again")

    def close(self) -> None:
        self.closing.set()
        self.in_flight.wait(CLOSE_GRACE)


def test_flush_sync_in_another_thread_during_a_slow_close_loses_nothing(tmp_path: Path) -> None:
    sink = SlowClosingSink()
    saved = tmp_path / "unwritten.jsonl"
    metrics = BatchMetricsWriter(
        sink,
        max_batch=10,
        max_delay=NEVER,
        retry_delay=NEVER,
        max_retry_delay=NEVER,
        unwritten_path=saved,
    )
    outcome: list[BaseException | None] = []

    def flush_during_close() -> None:
        sink.closing.wait(SAFETY_TIMEOUT)
        try:
            metrics.flush_sync()
        except (MetricsWriteError, RuntimeError) as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    def record_then_close() -> None:
        with metrics:
            for number in range(30):
                metrics.record("tick", number=number)

    flusher = threading.Thread(target=flush_during_close)
    flusher.start()
    try:
        with pytest.raises(MetricsNotWrittenError) as info:
            record_then_close()
    finally:
        sink.close_over.set()
        flusher.join(SAFETY_TIMEOUT)

    stats = metrics.stats
    assert stats.recorded == 30
    assert stats.waiting == 0
    assert stats.recorded == stats.written + stats.dropped + stats.unwritten
    written = [event["number"] for event in sink.written]
    saved_numbers = [event["number"] for event in read_metrics(saved)]
    assert sorted(written + saved_numbers) == list(range(30))
    assert info.value.count == stats.unwritten == len(saved_numbers)
    assert info.value.saved_to == str(saved)
    # Closing waited for the other thread: its write never reached the closing sink.
    assert sink.writes_while_closing == 0
    # The other thread was told the truth: its flush came after the close, which could
    # not write the 30 events and reported them.
    [told] = outcome
    assert isinstance(told, RuntimeError)
    assert "30 events" in str(told)


class ScriptedSink:
    """Succeeds or fails each write as scripted (then fails), with a close that yields."""

    def __init__(self, script: list[bool]) -> None:
        self.script = list(script)
        self.written: list[int] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            succeeds = self.script.pop(0) if self.script else False
        time.sleep(0)  # let a racing thread run in the middle of a write
        if not succeeds:
            raise OSError(28, "No space left on device")
        with self._lock:
            self.written.extend(event["number"] for event in events)

    def close(self) -> None:
        self.closing.set()
        for _ in range(20):
            time.sleep(0)  # a slow close: the racing threads get to run meanwhile


@settings(max_examples=60)
@given(
    count=st.integers(min_value=0, max_value=60),
    max_batch=st.integers(min_value=1, max_value=8),
    extra_room=st.integers(min_value=0, max_value=30),
    on_full=st.sampled_from(["drop_oldest", "drop_new"]),
    script=st.lists(st.booleans(), max_size=20),
    racers=st.integers(min_value=1, max_value=3),
)
def test_every_recorded_event_is_written_dropped_or_unwritten(
    count: int, max_batch: int, extra_room: int, on_full: OnFull, script: list[bool], racers: int
) -> None:
    sink = ScriptedSink(script)
    with tempfile.TemporaryDirectory() as directory:
        saved = Path(directory) / "unwritten.jsonl"
        metrics = BatchMetricsWriter(
            sink,
            max_batch=max_batch,
            max_buffer=max_batch + extra_room,
            on_full=on_full,
            max_delay=NEVER,
            retry_delay=0.001,
            max_retry_delay=0.001,
            unwritten_path=saved,
        )
        told_waiting: list[int] = []
        start = threading.Barrier(racers + 1)

        def flush_once() -> bool:
            """Flush, noting what a failure says waits; whether the writer is still open."""
            try:
                metrics.flush_sync()
            except MetricsWriteError as exc:
                told_waiting.append(exc.waiting)
            except RuntimeError:
                return False
            return True

        def flush_while_closing() -> None:
            start.wait(SAFETY_TIMEOUT)
            sink.closing.wait(SAFETY_TIMEOUT)
            for _ in range(3):
                if not flush_once():
                    return

        threads = [threading.Thread(target=flush_while_closing) for _ in range(racers)]
        for thread in threads:
            thread.start()
        error: MetricsNotWrittenError | None = None
        try:
            with metrics:
                start.wait(SAFETY_TIMEOUT)
                for number in range(count):
                    metrics.record("tick", number=number)
        except MetricsNotWrittenError as exc:
            error = exc
        finally:
            sink.closing.set()
            for thread in threads:
                thread.join(SAFETY_TIMEOUT)
        saved_numbers = [event["number"] for event in read_metrics(saved)] if saved.exists() else []

    stats = metrics.stats
    assert stats.recorded == count
    assert stats.waiting == 0
    assert stats.recorded == stats.written + stats.dropped + stats.unwritten
    assert len(sink.written) == stats.written
    assert len(saved_numbers) == stats.unwritten
    assert len(set(sink.written + saved_numbers)) == len(sink.written) + len(saved_numbers)
    assert set(sink.written + saved_numbers) <= set(range(count))
    assert (error.count if error else 0) == stats.unwritten
    # A failed write leaves at least its own batch waiting: never "0 events wait".
    assert all(waiting > 0 for waiting in told_waiting)
