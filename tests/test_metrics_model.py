"""What read_metrics returns equals what was recorded, in order, whatever the timing."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from botperf import BatchMetricsWriter, JsonLinesFileSink, read_metrics

field_names = st.text(min_size=1, max_size=8).filter(lambda name: name not in ("ts", "event"))
field_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.lists(st.integers(), max_size=3)
)
event_names = st.sampled_from(["llm_call", "message", "cache_hit", "ünïcode ✓"])
fields = st.dictionaries(field_names, field_values, max_size=4)
steps = st.lists(
    st.tuples(st.just("record"), event_names, fields)
    | st.tuples(st.just("flush"))
    | st.tuples(st.just("checkpoint")),
    max_size=40,
)


def read_back(path: Path) -> list[dict[str, Any]]:
    """The events in ``path`` without their ``ts``; none if nothing was written yet."""
    if not path.exists():
        return []
    return [
        {key: value for key, value in event.items() if key != "ts"} for event in read_metrics(path)
    ]


@settings(max_examples=60, deadline=None)
@given(
    plan=steps,
    max_batch=st.integers(min_value=1, max_value=8),
    max_delay=st.sampled_from([0.001, 0.01, 3600.0]),
    encoder=st.sampled_from(["json", "orjson"]),
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_async_writer_reads_back_what_was_recorded(
    plan: list[tuple[Any, ...]], max_batch: int, max_delay: float, encoder: Any, backend: str
) -> None:
    directory = Path(tempfile.mkdtemp())
    path = directory / "m.jsonl"
    recorded: list[dict[str, Any]] = []

    async def main() -> None:
        async with BatchMetricsWriter(
            path, max_batch=max_batch, max_delay=max_delay, encoder=encoder
        ) as metrics:
            for step in plan:
                if step[0] == "record":
                    _, name, values = step
                    metrics.record(name, **values)
                    recorded.append({"event": name, **values})
                elif step[0] == "flush":
                    await metrics.flush()
                    assert read_back(path) == recorded
                else:
                    await anyio.lowlevel.checkpoint()

    try:
        anyio.run(main, backend=backend)
        assert read_back(path) == recorded
    finally:
        shutil.rmtree(directory)


class FlakyFileSink:
    """A JSON-lines file whose next writes can be made to fail."""

    def __init__(self, path: Path) -> None:
        self.file = JsonLinesFileSink(path)
        self.failures = 0

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(5, "Input/output error")
        self.file.write_batch(events)

    def close(self) -> None:
        self.file.close()


class SyncWriterMachine(RuleBasedStateMachine):
    """A ``with`` writer, its background thread and failing writes, against a plain list."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp())
        self.path = self.directory / "m.jsonl"
        self.sink = FlakyFileSink(self.path)
        self.model: list[dict[str, Any]] = []
        self.metrics: BatchMetricsWriter | None = None

    @initialize(
        max_batch=st.integers(min_value=1, max_value=6),
        max_delay=st.sampled_from([0.001, 3600.0]),
    )
    def open_writer(self, max_batch: int, max_delay: float) -> None:
        self.metrics = BatchMetricsWriter(
            self.sink,
            max_batch=max_batch,
            max_delay=max_delay,
            max_buffer=10_000,
            retry_delay=0.001,
            max_retry_delay=0.001,
        )
        self.metrics.__enter__()

    @rule(name=event_names, values=fields)
    def record(self, name: str, values: dict[str, Any]) -> None:
        assert self.metrics is not None
        self.metrics.record(name, **values)
        self.model.append({"event": name, **values})

    @rule(count=st.integers(min_value=1, max_value=3))
    def fail_next_writes(self, count: int) -> None:
        self.sink.failures = count

    @rule()
    def flush(self) -> None:
        # The flusher thread consumes injected failures at its own pace, so whether any
        # are left is not machine state Hypothesis can replay: clear them instead of
        # making the rule's precondition depend on them.
        assert self.metrics is not None
        self.sink.failures = 0
        self.metrics.flush_sync()
        assert read_back(self.path) == self.model

    @invariant()
    def counters_add_up(self) -> None:
        assert self.metrics is not None
        stats = self.metrics.stats
        assert stats.recorded == len(self.model)
        assert stats.recorded == stats.written + stats.waiting
        assert stats.dropped == stats.unwritten == 0

    def teardown(self) -> None:
        try:
            if self.metrics is not None:
                self.sink.failures = 0
                self.metrics.__exit__(None, None, None)
                assert read_back(self.path) == self.model
        finally:
            shutil.rmtree(self.directory)


SyncWriterMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=20, deadline=None
)
test_sync_writer_matches_its_model = SyncWriterMachine.TestCase
