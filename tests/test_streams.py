"""Shared streams: the behaviours of issue 9, each on asyncio and trio."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import traceback
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from concurrency import eventually, leave_once_started

from botperf import (
    DedupCancelledError,
    Deduplicator,
    DedupStats,
    InvalidOptionError,
    SharedStream,
    StreamTooLongError,
    deduplicate,
)
from botperf._hosting import new_flight

pytestmark = pytest.mark.anyio


class Failure(Exception):
    pass


class Upstream:
    """An async generator function whose chunks are released one by one by the test.

    Each call is one upstream iteration; it records the chunks it yielded, whether it
    was closed (its ``finally`` ran) and whether it saw a cancellation.
    """

    def __init__(self, chunks: int = 3, *, error: BaseException | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.iterations = 0
        self.produced: list[list[object]] = []
        self.allowed = 0  # how many chunks the test has released so far
        self.changed = anyio.Event()
        self.closed = anyio.Event()
        self.saw_cancellation = False

    def release(self, count: int = 1) -> None:
        self.allowed += count
        self.changed.set()
        self.changed = anyio.Event()

    def release_all(self) -> None:
        self.release(self.chunks + 1)

    async def __call__(self, prefix: str = "chunk") -> AsyncIterator[object]:
        self.iterations += 1
        produced: list[object] = []
        self.produced.append(produced)
        try:
            for index in range(self.chunks):
                while self.allowed <= index:
                    await self.changed.wait()
                chunk = [f"{prefix} {index}"]  # a new object, so `is` tells copies apart
                produced.append(chunk)
                yield chunk
            while self.allowed <= self.chunks:
                await self.changed.wait()
            if self.error is not None:
                raise self.error
        except anyio.get_cancelled_exc_class():
            self.saw_cancellation = True
            raise
        finally:
            self.closed.set()


def settled(dedup: Deduplicator) -> bool:
    return dedup.in_flight == 0 and not dedup._streams and not dedup._detached


async def collect(stream: SharedStream[object], into: list[object]) -> None:
    async for chunk in stream:
        into.append(chunk)  # noqa: PERF401 - one by one: tests watch the progress


# Sharing: one upstream iteration, every consumer sees every chunk.


async def test_concurrent_consumers_share_one_upstream_iteration() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    received: list[list[object]] = [[] for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for into in received:
            tg.start_soon(collect, dedup.stream("key", upstream), into)
        await eventually(lambda: dedup.stats.calls == 4)
        upstream.release_all()
    assert upstream.iterations == 1
    assert all(chunks == upstream.produced[0] for chunks in received)
    assert dedup.stats == DedupStats(calls=4, executions=1, shared=3, cache_hits=0, errors=0)


async def test_every_consumer_gets_the_very_same_chunk_objects() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=2)
    first: list[object] = []
    second: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, dedup.stream("key", upstream), first)
        tg.start_soon(collect, dedup.stream("key", upstream), second)
        await eventually(lambda: dedup.stats.calls == 2)
        upstream.release_all()
    assert all(a is b for a, b in zip(first, second, strict=True))


async def test_late_joiner_replays_the_buffered_chunks_then_gets_the_live_ones() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=4)
    early: list[object] = []
    late: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, dedup.stream("key", upstream), early)
        upstream.release(2)
        await eventually(lambda: len(early) == 2)
        tg.start_soon(collect, dedup.stream("key", upstream), late)
        await eventually(lambda: len(late) == 2)
        upstream.release_all()
    assert upstream.iterations == 1
    assert early == late == upstream.produced[0]
    assert len(late) == 4


async def test_slow_consumer_holds_up_neither_the_upstream_nor_the_others() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=5)
    fast: list[object] = []
    slow: list[object] = []
    slow_may_read = anyio.Event()

    async def slow_consumer() -> None:
        stream = dedup.stream("key", upstream)
        slow.append(await stream.__anext__())
        await slow_may_read.wait()  # stuck on its own work while the stream goes on
        await collect(stream, slow)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_consumer)
        tg.start_soon(collect, dedup.stream("key", upstream), fast)
        upstream.release(1)
        await eventually(lambda: len(slow) == 1)
        upstream.release_all()
        await upstream.closed.wait()  # the upstream finished without waiting for `slow`
        await eventually(lambda: len(fast) == 5)
        assert len(slow) == 1
        slow_may_read.set()
    assert slow == fast == upstream.produced[0]


async def test_consumers_read_one_shared_buffer_with_a_cursor_each() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    upstream.release(2)
    streams = [dedup.stream("key", upstream) for _ in range(3)]
    for stream in streams:
        await stream.__anext__()
    await streams[0].__anext__()
    buffer = dedup._streams["key"].result
    assert all(stream._chunks is buffer for stream in streams)  # one copy of the reply
    assert [stream._cursor for stream in streams] == [2, 1, 1]
    upstream.release_all()
    for stream in streams:
        await collect(stream, [])
    await eventually(lambda: settled(dedup))


async def test_buffered_chunks_are_read_without_suspending() -> None:
    dedup = Deduplicator(ttl=60)
    upstream = Upstream(chunks=3)
    upstream.release_all()
    await collect(dedup.stream("key", upstream), [])
    replay = dedup.stream("key", upstream)
    with anyio.CancelScope() as scope:
        scope.cancel()  # any checkpoint would raise now
        chunks = [chunk async for chunk in replay]
    assert chunks == upstream.produced[0]


# Errors and the max_chunks limit.


async def test_upstream_exception_reaches_every_consumer_after_the_chunks_before_it() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=2, error=Failure("model crashed"))
    outcomes: list[tuple[list[object], BaseException]] = []

    async def consume() -> None:
        chunks: list[object] = []
        with pytest.raises(Failure) as info:
            await collect(dedup.stream("key", upstream), chunks)
        outcomes.append((chunks, info.value))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(consume)
        await eventually(lambda: dedup.stats.calls == 3)
        upstream.release_all()
    assert len(outcomes) == 3
    for chunks, error in outcomes:
        assert chunks == upstream.produced[0]
        assert type(error) is Failure
        assert error.args == ("model crashed",)
    assert dedup.stats.errors == 1
    assert settled(dedup)


async def test_no_consumer_sees_another_consumers_exception_context_or_frames() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=1, error=Failure("model crashed"))
    caught: dict[str, BaseException] = {}

    async def consumer_handling_its_own_error() -> None:
        try:
            raise KeyError("this consumer's private request")
        except KeyError:
            with pytest.raises(Failure) as info:
                await collect(dedup.stream("key", upstream), [])
            caught["handling"] = info.value

    async def clean_consumer() -> None:
        with pytest.raises(Failure) as info:
            await collect(dedup.stream("key", upstream), [])
        caught["clean"] = info.value

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer_handling_its_own_error)
        tg.start_soon(clean_consumer)
        await eventually(lambda: dedup.stats.calls == 2)
        upstream.release_all()
    handling, clean = caught["handling"], caught["clean"]
    assert handling is not clean
    assert isinstance(handling.__context__, KeyError)
    assert clean.__context__ is None
    frames = [frame.name for frame in traceback.extract_tb(clean.__traceback__)]
    assert "clean_consumer" in frames
    assert "consumer_handling_its_own_error" not in frames


async def test_a_failed_stream_is_not_replayed_and_the_next_one_starts_afresh() -> None:
    dedup = Deduplicator(ttl=60)
    upstream = Upstream(chunks=1, error=Failure("flaky"))
    upstream.release_all()
    with pytest.raises(Failure):
        await collect(dedup.stream("key", upstream), [])
    upstream.error = None
    chunks: list[object] = []
    await collect(dedup.stream("key", upstream), chunks)
    assert upstream.iterations == 2
    assert chunks == upstream.produced[1]
    assert dedup.stats.cache_hits == 0


async def test_consumer_raises_nothing_more_after_the_upstreams_exception() -> None:
    upstream = Upstream(chunks=0, error=Failure("once"))
    upstream.release_all()
    stream = Deduplicator().stream("key", upstream)
    with pytest.raises(Failure):
        await stream.__anext__()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_stream_past_max_chunks_fails_every_consumer_after_the_limit() -> None:
    dedup = Deduplicator(max_chunks=3)
    upstream = Upstream(chunks=10)
    outcomes: list[tuple[list[object], BaseException]] = []

    async def consume() -> None:
        chunks: list[object] = []
        with pytest.raises(StreamTooLongError, match=r"more than max_chunks=3 chunks") as info:
            await collect(dedup.stream("key", upstream), chunks)
        outcomes.append((chunks, info.value))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        tg.start_soon(consume)
        await eventually(lambda: dedup.stats.calls == 2)
        upstream.release_all()
    assert [chunks for chunks, _ in outcomes] == [upstream.produced[0][:3]] * 2
    for _, error in outcomes:
        assert isinstance(error, StreamTooLongError)
        assert (error.key, error.max_chunks) == ("key", 3)
    assert upstream.closed.is_set()  # the upstream was closed, not left running
    assert len(upstream.produced[0]) == 4
    assert dedup.stats.errors == 1
    assert settled(dedup)


async def test_stream_of_exactly_max_chunks_ends_normally() -> None:
    upstream = Upstream(chunks=3)
    upstream.release_all()
    chunks: list[object] = []
    await collect(Deduplicator(max_chunks=3).stream("key", upstream), chunks)
    assert chunks == upstream.produced[0]


async def test_fn_that_returns_no_async_iterable_fails_the_consumers_with_type_error() -> None:
    def not_a_stream() -> list[str]:
        return ["a", "b"]

    stream = Deduplicator().stream("key", not_a_stream)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async iterable"):
        await stream.__anext__()


# Leaving early: break, aclose, cancellation.


async def test_consumer_breaking_out_leaves_the_others_unaffected() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    stayed: list[object] = []

    async def break_after_one() -> None:
        async for _ in dedup.stream("key", upstream):
            break

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, dedup.stream("key", upstream), stayed)
        tg.start_soon(break_after_one)
        await eventually(lambda: dedup.stats.calls == 2)
        upstream.release(1)
        await eventually(lambda: dedup._streams["key"].waiters == 1)
        upstream.release_all()
    assert stayed == upstream.produced[0]
    assert not upstream.saw_cancellation


async def test_upstream_is_closed_when_the_last_consumer_breaks_out() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    upstream.release(1)
    async for _ in dedup.stream("key", upstream):
        break
    await upstream.closed.wait()
    assert upstream.saw_cancellation
    await eventually(lambda: settled(dedup))
    assert dedup.stats.errors == 0


async def test_upstream_is_closed_when_the_last_consumer_is_cancelled() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(collect, dedup.stream("key", upstream), [])
        await eventually(lambda: dedup.stats.calls == 2)
        upstream.release(1)
        await eventually(lambda: upstream.iterations == 1 and len(upstream.produced[0]) == 1)
        tg.cancel_scope.cancel()
    await upstream.closed.wait()
    assert upstream.saw_cancellation
    await eventually(lambda: settled(dedup))


async def test_consumer_timed_out_while_waiting_leaves_while_the_others_go_on() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=2)
    stayed: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, dedup.stream("key", upstream), stayed)
        await eventually(lambda: dedup.stats.calls == 1)
        timed_out = dedup.stream("key", upstream)
        with pytest.raises(TimeoutError), anyio.fail_after(0.01):
            await collect(timed_out, [])
        assert dedup._streams["key"].waiters == 1
        upstream.release_all()
    assert stayed == upstream.produced[0]
    assert not upstream.saw_cancellation
    assert [chunk async for chunk in timed_out] == []  # it left: nothing more


def waiting_on(flight: Any) -> int:
    """How many waits for news the flight holds: its futures on asyncio, parked tasks on trio."""
    if hasattr(flight, "futures"):
        return len(flight.futures)
    return 0 if flight.lot is None else int(flight.lot.statistics().tasks_waiting)


async def test_consumers_that_timed_out_leave_nothing_behind_in_a_running_stream() -> None:
    dedup = Deduplicator(cancel_abandoned=False)
    upstream = Upstream(chunks=1)
    for _ in range(50):
        with anyio.move_on_after(0):
            await collect(dedup.stream("key", upstream), [])
    flight = dedup._streams["key"]
    assert (flight.waiters, waiting_on(flight)) == (0, 0)
    stayed: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, dedup.stream("key", upstream), stayed)
        await eventually(lambda: waiting_on(flight) == 1)
        upstream.release_all()
    assert stayed == upstream.produced[0]
    assert upstream.iterations == 1
    assert settled(dedup)


async def test_aclosing_the_last_consumer_closes_the_upstream() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    upstream.release(1)
    async with contextlib.aclosing(dedup.stream("key", upstream)) as stream:
        assert await stream.__anext__() == ["chunk 0"]
    await upstream.closed.wait()
    assert upstream.saw_cancellation
    await eventually(lambda: settled(dedup))


async def test_aclose_before_iterating_ends_the_stream_without_starting_anything() -> None:
    dedup = Deduplicator()
    upstream = Upstream()
    stream = dedup.stream("key", upstream)
    await stream.aclose()
    await stream.aclose()
    assert [chunk async for chunk in stream] == []
    assert upstream.iterations == 0
    assert dedup.stats.calls == 0


async def test_consumer_that_cannot_leave_when_garbage_collected_logs_instead_of_raising(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def loop_closed(self: object) -> None:
        raise RuntimeError("Event loop is closed")

    dedup = Deduplicator()
    upstream = Upstream(chunks=2)
    upstream.release(1)
    stream = dedup.stream("key", upstream)
    await stream.__anext__()
    flight = dedup._streams["key"]
    monkeypatch.setattr(type(flight), "cancel", loop_closed)
    with caplog.at_level(logging.WARNING, logger="botperf._streams"):
        del stream
        gc.collect()
    assert "could not leave it when it was garbage-collected" in caplog.text
    monkeypatch.undo()
    flight.cancel()  # what the closed loop could not do
    await upstream.closed.wait()
    await eventually(lambda: settled(dedup))


async def test_a_consumer_after_an_abandoned_stream_starts_a_fresh_upstream() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=2)
    upstream.release(1)
    async for _ in dedup.stream("key", upstream):
        break
    assert dedup.in_flight == 0
    upstream.release_all()
    chunks: list[object] = []
    await collect(dedup.stream("key", upstream), chunks)
    assert upstream.iterations == 2
    assert chunks == upstream.produced[1]
    await eventually(lambda: settled(dedup))


async def test_stream_abandoned_before_its_upstream_started_never_calls_fn() -> None:
    # As for run(): whether the last consumer can leave before the hosted task's first
    # step depends on the scheduler, so this drives the hosted task's body directly.
    dedup = Deduplicator()
    upstream = Upstream()
    flight = new_flight("key")
    flight.result = []
    flight.abandoned = flight.detached = True
    dedup._detached.add(flight)
    await dedup._host_stream(flight, upstream, (), {})
    assert upstream.iterations == 0
    assert flight.done
    assert settled(dedup)


async def test_opted_out_stream_runs_to_completion_and_is_replayed() -> None:
    dedup = Deduplicator(cancel_abandoned=False, ttl=60)
    upstream = Upstream(chunks=3)
    upstream.release(1)
    async for _ in dedup.stream("key", upstream):
        break
    assert dedup.in_flight == 1
    late: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, dedup.stream("key", upstream), late)  # joins the running one
        await eventually(lambda: len(late) == 1)
        upstream.release_all()
    assert not upstream.saw_cancellation
    replayed: list[object] = []
    await collect(dedup.stream("key", upstream), replayed)
    assert late == replayed == upstream.produced[0]
    assert upstream.iterations == 1
    assert dedup.stats == DedupStats(calls=3, executions=1, shared=1, cache_hits=1, errors=0)
    await eventually(lambda: settled(dedup))


async def test_failure_of_a_stream_nobody_consumes_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dedup = Deduplicator(cancel_abandoned=False)
    upstream = Upstream(chunks=1, error=Failure("nobody is listening"))
    upstream.release(1)
    async for _ in dedup.stream("key", upstream):
        break
    with caplog.at_level(logging.WARNING, logger="botperf._dedup"):
        upstream.release_all()
        await eventually(lambda: settled(dedup))
    assert dedup.stats.errors == 1
    assert "after every caller had left" in caplog.text


async def test_abandoned_upstream_raising_instead_of_ending_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dedup = Deduplicator()
    started = anyio.Event()

    async def stubborn() -> AsyncIterator[str]:
        started.set()
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            raise ValueError("cleanup failed") from None
        yield "never"

    with caplog.at_level(logging.WARNING, logger="botperf._streams"):
        await leave_once_started(lambda: collect(dedup.stream("key", stubborn), []), started)
        await eventually(lambda: settled(dedup))
    assert "raised instead of ending" in caplog.text
    assert dedup.stats.errors == 0


async def test_upstream_whose_aclose_raises_is_logged_and_the_consumers_still_get_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BadClose:
        def __init__(self) -> None:
            self.left = ["a", "b"]

        def __aiter__(self) -> BadClose:
            return self

        async def __anext__(self) -> str:
            if not self.left:
                raise StopAsyncIteration
            return self.left.pop(0)

        async def aclose(self) -> None:
            raise OSError("connection reset while closing")

    dedup = Deduplicator()
    with caplog.at_level(logging.WARNING, logger="botperf._streams"):
        assert [chunk async for chunk in dedup.stream("key", BadClose)] == ["a", "b"]
        await eventually(lambda: settled(dedup))
    assert "closing the upstream" in caplog.text


async def test_upstream_without_aclose_is_iterated_to_its_end() -> None:
    class Countdown:
        def __init__(self, start: int) -> None:
            self.next = start

        def __aiter__(self) -> Countdown:
            return self

        async def __anext__(self) -> int:
            await anyio.lowlevel.checkpoint()
            if self.next == 0:
                raise StopAsyncIteration
            self.next -= 1
            return self.next + 1

    dedup = Deduplicator()
    assert [n async for n in dedup.stream("key", Countdown, 3)] == [3, 2, 1]
    assert settled(dedup)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_hosted_task_cancelled_while_closing_the_upstream_ends_cancelled_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closing = anyio.Event()

    class SlowClose:
        def __init__(self) -> None:
            self.left = ["a"]

        def __aiter__(self) -> SlowClose:
            return self

        async def __anext__(self) -> str:
            if not self.left:
                raise StopAsyncIteration
            return self.left.pop(0)

        async def aclose(self) -> None:
            closing.set()
            await anyio.sleep(3600)

    dedup = Deduplicator()
    with caplog.at_level(logging.WARNING, logger="botperf._streams"):
        assert [chunk async for chunk in dedup.stream("key", SlowClose)] == ["a"]
        await closing.wait()
        (flight,) = dedup._detached  # held while its task closes the upstream
        flight.task.cancel()  # type: ignore[attr-defined]
        with pytest.raises(asyncio.CancelledError):
            await flight.task  # type: ignore[attr-defined]
    assert "closing the upstream" not in caplog.text
    assert settled(dedup)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_stream_cancelled_from_outside_fails_its_consumers_instead_of_hanging() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    upstream.release(1)
    outcomes: list[tuple[list[object], BaseException]] = []

    async def consume() -> None:
        chunks: list[object] = []
        with pytest.raises(DedupCancelledError) as info:
            await collect(dedup.stream("key", upstream), chunks)
        outcomes.append((chunks, info.value))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        tg.start_soon(consume)
        await eventually(lambda: dedup.stats.calls == 2 and upstream.produced == [[["chunk 0"]]])
        dedup._streams["key"].task.cancel()  # type: ignore[attr-defined]
    assert [chunks for chunks, _ in outcomes] == [upstream.produced[0]] * 2
    assert dedup.stats.errors == 1
    assert upstream.closed.is_set()
    assert settled(dedup)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_stream_cancelled_from_outside_before_its_first_step_fails_its_consumer() -> None:
    dedup = Deduplicator()
    upstream = Upstream()
    consumer = asyncio.create_task(collect(dedup.stream("key", upstream), []))

    def cancel_hosted_task() -> None:  # runs right after the consumer's first step
        dedup._streams["key"].task.cancel()  # type: ignore[attr-defined]

    asyncio.get_running_loop().call_soon(cancel_hosted_task)
    with pytest.raises(DedupCancelledError):
        await consumer
    if sys.version_info < (3, 12):  # since 3.12 the task starts eagerly, in stream()
        assert upstream.iterations == 0
    assert settled(dedup)


# Nothing leaks.


async def test_nothing_remains_once_every_consumer_is_done() -> None:
    dedup = Deduplicator()
    ok = Upstream(chunks=2)
    failing = Upstream(chunks=1, error=Failure("down"))
    abandoned = Upstream(chunks=2)
    for upstream in (ok, failing, abandoned):
        upstream.release_all()
    await collect(dedup.stream("ok", ok), [])
    with pytest.raises(Failure):
        await collect(dedup.stream("failing", failing), [])
    async for _ in dedup.stream("abandoned", abandoned):
        break
    await eventually(lambda: settled(dedup))
    assert all(upstream.closed.is_set() for upstream in (ok, failing, abandoned))


async def test_a_finished_stream_is_freed_once_its_consumers_are() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=2)
    upstream.release_all()
    stream = dedup.stream("key", upstream)
    await collect(stream, [])
    await eventually(lambda: settled(dedup))
    del stream
    gc.collect()
    assert dedup._streams == {}
    assert dedup.stats.calls == dedup.stats.executions == 1


async def test_a_task_that_cannot_be_started_leaves_no_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("Nursery is closed to new arrivals")

    dedup = Deduplicator()
    monkeypatch.setattr(type(new_flight("probe")), "start", refuse)
    with pytest.raises(RuntimeError, match="closed"):
        await collect(dedup.stream("key", Upstream()), [])
    assert settled(dedup)


# The ttl cache, forget(), keys and stats.


async def test_ttl_replays_a_completed_stream_until_it_expires() -> None:
    # The cache hit must come within ttl even on a stalled machine: 0.5 s is ample.
    dedup = Deduplicator(ttl=0.5)
    upstream = Upstream(chunks=2)
    upstream.release_all()
    first: list[object] = []
    await collect(dedup.stream("key", upstream), first)
    replayed: list[object] = []
    await collect(dedup.stream("key", upstream), replayed)
    assert all(a is b for a, b in zip(first, replayed, strict=True))
    assert upstream.iterations == 1
    await anyio.sleep(0.6)
    await collect(dedup.stream("key", upstream), [])
    assert upstream.iterations == 2
    assert dedup.stats == DedupStats(calls=3, executions=2, shared=0, cache_hits=1, errors=0)


async def test_streams_and_run_calls_with_equal_keys_are_independent() -> None:
    dedup = Deduplicator(ttl=60)
    upstream = Upstream(chunks=1)
    upstream.release_all()

    async def answer() -> str:
        return "answer"

    assert await dedup.run("key", answer) == "answer"
    assert [chunk async for chunk in dedup.stream("key", upstream)] == upstream.produced[0]
    assert await dedup.run("key", answer) == "answer"
    assert dedup.stats.executions == 2


async def test_forget_detaches_a_running_stream_and_drops_its_replay() -> None:
    dedup = Deduplicator(ttl=60)
    upstream = Upstream(chunks=2)
    first: list[object] = []
    second: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, dedup.stream("key", upstream), first)
        await eventually(lambda: upstream.iterations == 1)
        dedup.forget("key")
        assert dedup.in_flight == 0
        tg.start_soon(collect, dedup.stream("key", upstream), second)
        await eventually(lambda: upstream.iterations == 2)
        upstream.release_all()
    assert (first, second) == (upstream.produced[0], upstream.produced[1])
    await collect(dedup.stream("key", upstream), [])  # the second one was cached
    assert upstream.iterations == 2
    dedup.forget("key")
    await collect(dedup.stream("key", upstream), [])
    assert upstream.iterations == 3
    assert settled(dedup)


async def test_forgotten_stream_is_cancelled_when_its_last_consumer_leaves() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=3)
    upstream.release(1)
    async for _ in dedup.stream("key", upstream):
        dedup.forget("key")
        break
    await upstream.closed.wait()
    assert upstream.saw_cancellation
    await eventually(lambda: settled(dedup))


async def test_unhashable_key_raises_dedup_key_error_at_once() -> None:
    dedup = Deduplicator()
    with pytest.raises(TypeError, match=r"Deduplicator.stream\(\).*unhashable type: 'list'"):
        dedup.stream(["not", "hashable"], Upstream())
    assert dedup.stats.calls == 0


async def test_a_stream_is_joined_at_its_first_step_not_when_created() -> None:
    dedup = Deduplicator()
    upstream = Upstream(chunks=1)
    stream = dedup.stream("key", upstream)
    await anyio.lowlevel.checkpoint()
    assert (dedup.stats.calls, upstream.iterations, dedup.in_flight) == (0, 0, 0)
    upstream.release_all()
    assert [chunk async for chunk in stream] == upstream.produced[0]
    assert dedup.stats.calls == 1


async def test_repr_shows_the_key_and_the_progress() -> None:
    upstream = Upstream(chunks=1)
    upstream.release_all()
    stream = Deduplicator().stream("key", upstream)
    assert repr(stream) == "<SharedStream key='key' not started>"
    await stream.__anext__()
    assert repr(stream) == "<SharedStream key='key' read 1 of 1 buffered chunks>"
    await stream.aclose()
    assert repr(stream) == "<SharedStream key='key' closed>"


def test_invalid_max_chunks_fails_at_construction() -> None:
    with pytest.raises(InvalidOptionError, match=r"max_chunks=0\): max_chunks must be an int"):
        Deduplicator(max_chunks=0)
    with pytest.raises(InvalidOptionError, match="max_chunks must be an int of at least 1"):
        deduplicate(max_chunks=-1)
    with pytest.raises(InvalidOptionError, match="max_chunks must be an int of at least 1"):
        Deduplicator(max_chunks=2.5)  # type: ignore[arg-type]


# The decorator on async generator functions.


async def test_decorated_async_generator_function_shares_one_iteration() -> None:
    iterations = 0
    release = anyio.Event()

    @deduplicate(key=lambda prompt: prompt.casefold())
    async def reply(prompt: str) -> AsyncIterator[str]:
        nonlocal iterations
        iterations += 1
        await release.wait()
        for word in prompt.split():
            yield word

    received: list[list[object]] = [[], []]
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, reply("Hello there"), received[0])
        tg.start_soon(collect, reply("hello THERE"), received[1])
        await eventually(lambda: reply.deduplicator.stats.calls == 2)
        release.set()
    assert received[0] == received[1]  # the first caller's prompt, shared
    assert received[0] in (["Hello", "there"], ["hello", "THERE"])
    assert iterations == 1
    assert isinstance(reply("x"), SharedStream)
    assert reply.__name__ == "reply"


async def test_decorated_async_generator_function_with_unhashable_arguments_names_itself() -> None:
    @deduplicate()
    async def words(tags: list[str]) -> AsyncIterator[str]:
        for tag in tags:
            yield tag

    with pytest.raises(TypeError, match=r"@deduplicate on .*words\(\)"):
        words(["a"])


async def test_stream_runs_with_the_first_consumers_context_variables() -> None:
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("first")

    async def read() -> AsyncIterator[str]:
        yield request_id.get()

    assert [value async for value in Deduplicator().stream("key", read)] == ["first"]
