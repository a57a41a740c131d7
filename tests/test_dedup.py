"""Deduplicator: the seven behaviours of issue 3, each on asyncio and trio."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import math
import sys
import traceback
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from concurrency import eventually, leave_once_started

from botperf import DedupCancelledError, Deduplicator, DedupStats, InvalidOptionError, deduplicate
from botperf._hosting import new_flight

pytestmark = pytest.mark.anyio


class Work:
    """An async function whose calls block until released, recording what happened."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.saw_cancellation = anyio.Event()
        self.finished = anyio.Event()
        self.error: BaseException | None = None

    async def __call__(self, value: object = "result") -> object:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.saw_cancellation.set()
            raise
        finally:
            self.finished.set()
        if self.error is not None:
            raise self.error
        return [value]  # a new object each call, so `is` tells executions apart


def settled(dedup: Deduplicator) -> bool:
    return dedup.in_flight == 0 and not dedup._flights and not dedup._detached


def assert_stats_identity(stats: DedupStats) -> None:
    assert stats.calls == stats.executions + stats.shared + stats.cache_hits


async def gather(*calls: Callable[[], Awaitable[object]]) -> list[object]:
    results: list[object] = [None] * len(calls)

    async def one(index: int) -> None:
        results[index] = await calls[index]()

    async with anyio.create_task_group() as tg:
        for index in range(len(calls)):
            tg.start_soon(one, index)
    return results


# 1. Concurrent calls with an equal key run fn once and share the result object.


async def test_concurrent_calls_with_an_equal_key_run_fn_once_and_share_the_result() -> None:
    dedup = Deduplicator()
    work = Work()

    async def release_when_all_joined() -> None:
        await eventually(lambda: dedup.stats.calls == 5)
        work.release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_when_all_joined)
        results = await gather(*[lambda: dedup.run("key", work)] * 5)
    assert work.calls == 1
    assert all(result is results[0] for result in results)
    assert dedup.stats == DedupStats(calls=5, executions=1, shared=4, cache_hits=0, errors=0)


async def test_calls_with_different_keys_do_not_wait_for_each_other() -> None:
    dedup = Deduplicator()
    blocked = Work()
    other = Work()
    other.release.set()
    async with anyio.create_task_group() as tg:
        tg.start_soon(dedup.run, "blocked", blocked)
        await blocked.started.wait()
        assert await dedup.run("other", other) == ["result"]
        assert dedup.in_flight == 1
        blocked.release.set()
    assert dedup.stats.executions == 2


async def test_keyword_arguments_reach_fn() -> None:
    async def join(first: str, *, second: str) -> str:
        return first + second

    assert await Deduplicator().run("key", join, "a", second="b") == "ab"


# 2. An exception reaches every caller waiting at that moment; the next call runs fn again.


async def test_exception_reaches_every_waiting_caller() -> None:
    dedup = Deduplicator()
    work = Work()
    work.error = LookupError("model not found")
    caught: list[BaseException] = []

    async def call() -> None:
        with pytest.raises(LookupError) as info:
            await dedup.run("key", work)
        caught.append(info.value)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(call)
        await eventually(lambda: dedup.stats.calls == 3)
        work.release.set()
    assert len(caught) == 3
    assert [type(exc) for exc in caught] == [LookupError] * 3
    assert [exc.args for exc in caught] == [("model not found",)] * 3
    assert dedup.stats.errors == 1
    assert work.calls == 1


async def test_next_call_after_an_exception_runs_fn_again() -> None:
    dedup = Deduplicator(ttl=60)
    work = Work()
    work.release.set()
    work.error = ValueError("flaky")
    with pytest.raises(ValueError, match="flaky"):
        await dedup.run("key", work)
    work.error = None
    assert await dedup.run("key", work) == ["result"]
    assert work.calls == 2
    assert dedup.stats.cache_hits == 0


async def test_reraising_to_many_callers_does_not_grow_the_traceback() -> None:
    dedup = Deduplicator()
    work = Work()
    work.error = ValueError("boom")
    lengths: list[int] = []

    async def call() -> None:
        try:
            await dedup.run("key", work)
        except ValueError as exc:
            lengths.append(len(traceback.extract_tb(exc.__traceback__)))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(call)
        await eventually(lambda: dedup.stats.calls == 20)
        work.release.set()
    assert len(set(lengths)) == 1


def add_note(exc: BaseException, note: str) -> None:
    """`exc.add_note(note)`, or on Python 3.10 (which has no `add_note`) what it does.

    Notes (PEP 678) are a `__notes__` list on the exception, which code on 3.10 sets by hand
    (the `exceptiongroup` backport shows them): so on 3.10 too the test checks that every
    caller gets notes of its own.
    """
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        vars(exc).setdefault("__notes__", []).append(note)


def frame_names(exc: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


async def test_no_caller_sees_another_callers_exception_context_frames_or_notes() -> None:
    dedup = Deduplicator()
    work = Work()
    work.error = ValueError("upstream failed")
    add_note(work.error, "from fn")
    caught: dict[str, BaseException] = {}
    both_caught = anyio.Event()

    async def caller_handling_its_own_error() -> None:
        try:
            raise KeyError("this caller's private request")
        except KeyError:
            try:
                await dedup.run("key", work)
            except ValueError as exc:
                add_note(exc, "seen by the first caller")
                caught["first"] = exc
                await both_caught.wait()  # holds its exception while the other raises

    async def clean_caller() -> None:
        try:
            await dedup.run("key", work)
        except ValueError as exc:
            caught["second"] = exc
            both_caught.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller_handling_its_own_error)
        await work.started.wait()
        tg.start_soon(clean_caller)
        await eventually(lambda: dedup.stats.calls == 2)
        work.release.set()
    first, second = caught["first"], caught["second"]
    assert first is not second
    assert isinstance(first.__context__, KeyError)
    assert second.__context__ is None
    assert "caller_handling_its_own_error" in frame_names(first)
    assert "clean_caller" not in frame_names(first)
    assert "clean_caller" in frame_names(second)
    assert "caller_handling_its_own_error" not in frame_names(second)
    assert first.__notes__ == ["from fn", "seen by the first caller"]
    assert second.__notes__ == ["from fn"]


async def test_a_sole_caller_gets_the_very_exception_fn_raised() -> None:
    work = Work()
    work.release.set()
    work.error = ValueError("only one caller")
    with pytest.raises(ValueError, match="only one caller") as info:
        await Deduplicator().run("key", work)
    assert info.value is work.error


async def test_each_caller_gets_a_faithful_copy_of_the_exception() -> None:
    class StatusError(Exception):
        inits = 0

        def __init__(self, message: str, *, status: int) -> None:
            super().__init__(message)
            self.status = status
            StatusError.inits += 1

    dedup = Deduplicator()
    errors = [StatusError("rate limited", status=429), OSError(111, "refused", "host:11434")]
    caught: list[BaseException] = []

    async def call(error: BaseException) -> None:
        async def fail() -> None:
            await release.wait()
            raise error

        try:
            await dedup.run(type(error), fail)
        except (StatusError, OSError) as exc:
            caught.append(exc)

    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        for error in errors * 3:
            tg.start_soon(call, error)
        await eventually(lambda: dedup.stats.calls == 6)
        release.set()
    status_errors = [exc for exc in caught if isinstance(exc, StatusError)]
    os_errors = [exc for exc in caught if isinstance(exc, OSError)]
    assert len({id(exc) for exc in caught}) == 6
    assert [(exc.args, exc.status) for exc in status_errors] == [(("rate limited",), 429)] * 3
    assert StatusError.inits == 1  # copied without calling __init__ again
    assert [(exc.errno, exc.strerror, exc.filename) for exc in os_errors] == [
        (111, "refused", "host:11434")
    ] * 3
    assert all(type(exc) is ConnectionRefusedError for exc in os_errors)


class Unreachable(OSError):
    """Its constructor makes other args than it takes: a copy would say another thing."""

    def __init__(self, host: str) -> None:
        super().__init__(f"cannot reach {host}")


class Refused(OSError):
    """Its constructor refuses its own args: it cannot be rebuilt from them."""

    def __init__(self, message: str, *, port: int) -> None:
        super().__init__(message)
        self.port = port


@pytest.mark.parametrize(
    "make_error",
    [lambda: Unreachable("ollama"), lambda: Refused("refused", port=11434)],
    ids=["constructor-makes-other-args", "constructor-refuses-its-args"],
)
async def test_an_exception_that_cannot_be_copied_is_shared_with_each_callers_own_context(
    make_error: Callable[[], OSError],
) -> None:
    dedup = Deduplicator()
    work = Work()
    work.error = make_error()
    # What each caller saw as it caught the exception, whichever was woken first.
    contexts: dict[str, BaseException | None] = {}
    caught: list[BaseException] = []

    async def caller_handling_its_own_error() -> None:
        try:
            raise KeyError("private")
        except KeyError:
            try:
                await dedup.run("key", work)
            except OSError as exc:
                contexts["handling"] = exc.__context__
                caught.append(exc)

    async def clean_caller() -> None:
        try:
            await dedup.run("key", work)
        except OSError as exc:
            contexts["clean"] = exc.__context__
            caught.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller_handling_its_own_error)
        tg.start_soon(clean_caller)
        await eventually(lambda: dedup.stats.calls == 2)
        work.release.set()
    assert caught[0] is caught[1] is work.error
    assert isinstance(contexts["handling"], KeyError)
    assert contexts["clean"] is None


async def test_base_exception_from_fn_reaches_the_callers_and_spares_the_event_loop() -> None:
    class Fatal(BaseException):
        pass

    async def fail() -> None:
        raise Fatal

    dedup = Deduplicator()
    with pytest.raises(Fatal):
        await dedup.run("key", fail)
    assert dedup.stats.errors == 1
    assert settled(dedup)


async def test_fn_failing_before_its_first_await_logs_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def validate(prompt: str) -> str:
        raise ValueError("empty prompt")  # on Python 3.12+ asyncio: inside the eager start

    with (
        caplog.at_level(logging.DEBUG, logger="botperf"),
        pytest.raises(ValueError, match="empty prompt"),
    ):
        await Deduplicator().run("key", validate, "")
    assert caplog.records == []


async def test_fn_failing_in_a_task_started_within_run_logs_no_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an eager start does, on any Python and both backends: the hosted task runs
    # to its end inside Flight.start(), before run() gets control back.
    def start_and_finish_at_once(self: object, async_fn: Any, *args: Any) -> None:
        with pytest.raises(StopIteration):
            async_fn(*args).send(None)

    async def validate() -> str:
        raise ValueError("empty prompt")

    dedup = Deduplicator()
    monkeypatch.setattr(type(new_flight("probe")), "start", start_and_finish_at_once)
    with (
        caplog.at_level(logging.DEBUG, logger="botperf"),
        pytest.raises(ValueError, match="empty prompt") as info,
    ):
        await dedup.run("key", validate)
    assert caplog.records == []
    assert "validate" in frame_names(info.value)
    assert dedup.stats.errors == 1
    assert settled(dedup)


# 3. Cancelling one caller takes effect promptly and never affects the others.


async def test_caller_timed_out_with_fail_after_leaves_while_others_still_wait() -> None:
    dedup = Deduplicator()
    work = Work()
    async with anyio.create_task_group() as tg:
        tg.start_soon(dedup.run, "key", work)
        await work.started.wait()
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.01):
                await dedup.run("key", work)
        assert not work.release.is_set()
        assert dedup.in_flight == 1
        work.release.set()
    assert work.calls == 1
    assert not work.saw_cancellation.is_set()


async def test_caller_leaving_with_move_on_after_does_not_delay_the_others() -> None:
    dedup = Deduplicator()
    work = Work()
    results: list[object] = []

    async def waiting_caller() -> None:
        results.append(await dedup.run("key", work))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiting_caller)
        await work.started.wait()
        with anyio.move_on_after(0.01) as scope:
            await dedup.run("key", work)
        assert scope.cancelled_caught
        work.release.set()
    assert results == [["result"]]
    assert dedup.stats == DedupStats(calls=2, executions=1, shared=1, cache_hits=0, errors=0)


async def test_cancelling_a_callers_task_group_leaves_other_callers_running() -> None:
    dedup = Deduplicator()
    work = Work()
    results: list[object] = []

    async def waiting_caller() -> None:
        results.append(await dedup.run("key", work))

    async with anyio.create_task_group() as outer:
        outer.start_soon(waiting_caller)
        async with anyio.create_task_group() as doomed:
            for _ in range(3):
                doomed.start_soon(dedup.run, "key", work)
            await eventually(lambda: dedup.stats.calls == 4)
            doomed.cancel_scope.cancel()
        assert not work.saw_cancellation.is_set()
        work.release.set()
    assert results == [["result"]]
    assert work.calls == 1


def waiting_on(flight: Any) -> int:
    """How many waits the flight holds: its futures on asyncio, its Event's on trio."""
    if hasattr(flight, "futures"):
        return len(flight.futures)
    return int(flight.event.statistics().tasks_waiting)


async def test_callers_that_timed_out_leave_nothing_behind_in_a_running_execution() -> None:
    dedup = Deduplicator(cancel_abandoned=False)
    work = Work()
    for _ in range(50):
        with anyio.move_on_after(0):
            await dedup.run("key", work)
    flight = dedup._flights["key"]
    assert (flight.waiters, waiting_on(flight)) == (0, 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dedup.run, "key", work)
        await eventually(lambda: flight.waiters == 1)
        assert waiting_on(flight) == 1
        work.release.set()
    assert work.calls == 1
    assert settled(dedup)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_execution_nobody_waits_for_cancelled_at_shutdown_logs_no_warning(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    dedup = Deduplicator(cancel_abandoned=False)
    work = Work()

    async def main() -> None:
        with anyio.move_on_after(0):
            await dedup.run("key", work)
        await work.started.wait()
        # Returning leaves the execution running: the event loop cancels it on the way out.

    with caplog.at_level(logging.DEBUG, logger="botperf"):
        anyio.run(main, backend=backend)
    assert work.saw_cancellation.is_set()
    assert [record.levelname for record in caplog.records] == ["DEBUG"]
    assert "cancelled from outside while nobody waited" in caplog.text
    assert dedup.stats.errors == 0
    assert settled(dedup)


async def test_cancelling_the_first_caller_neither_cancels_nor_restarts_the_execution() -> None:
    dedup = Deduplicator()
    work = Work()
    leader_scope = anyio.CancelScope()
    results: list[object] = []

    async def leader() -> None:
        with leader_scope:
            await dedup.run("key", work)

    async def follower() -> None:
        results.append(await dedup.run("key", work))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await work.started.wait()
        tg.start_soon(follower)
        tg.start_soon(follower)
        await eventually(lambda: dedup.stats.calls == 3)
        leader_scope.cancel()
        await eventually(lambda: leader_scope.cancelled_caught)
        assert not work.saw_cancellation.is_set()
        work.release.set()
    assert len(results) == 2
    assert results[0] is results[1]
    assert work.calls == 1
    assert dedup.stats.executions == 1


async def test_fn_runs_with_the_first_callers_context_variables() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("first")

    async def read() -> str:
        return request_id.get()

    assert await Deduplicator().run("key", read) == "first"


# 4. When every caller has gone, the execution is cancelled (unless opted out).


async def test_execution_is_cancelled_when_every_caller_has_left() -> None:
    dedup = Deduplicator()
    work = Work()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(dedup.run, "key", work)
        await work.started.wait()
        await eventually(lambda: dedup.stats.calls == 3)
        tg.cancel_scope.cancel()
    await work.saw_cancellation.wait()
    await eventually(lambda: settled(dedup))
    assert dedup.stats.errors == 0


async def test_a_call_after_an_abandoned_execution_starts_a_fresh_one() -> None:
    dedup = Deduplicator()
    abandoned = Work()
    await leave_once_started(lambda: dedup.run("key", abandoned), abandoned.started)
    assert dedup.in_flight == 0
    fresh = Work()
    fresh.release.set()
    assert await dedup.run("key", fresh) == ["result"]
    assert (abandoned.calls, fresh.calls) == (1, 1)
    await abandoned.saw_cancellation.wait()
    await eventually(lambda: settled(dedup))


async def test_execution_abandoned_before_it_started_never_calls_fn() -> None:
    # Whether the last caller can leave before the hosted task takes its first step
    # depends on the scheduler (never on asyncio, sometimes on trio), so this drives the
    # hosted task's body directly with a flight abandoned in that window.
    dedup = Deduplicator()
    work = Work()
    flight = new_flight("key")
    flight.abandoned = flight.detached = True
    dedup._detached.add(flight)
    await dedup._execute(flight, work, (), {})
    assert work.calls == 0
    assert flight.done
    assert settled(dedup)


async def test_opted_out_execution_runs_to_completion_and_caches_its_result() -> None:
    dedup = Deduplicator(cancel_abandoned=False, ttl=60)
    work = Work()
    await leave_once_started(lambda: dedup.run("key", work), work.started)
    assert dedup.in_flight == 1
    work.release.set()
    await eventually(lambda: settled(dedup))
    assert not work.saw_cancellation.is_set()
    assert await dedup.run("key", work) == ["result"]
    assert work.calls == 1
    assert dedup.stats.cache_hits == 1


async def test_a_call_joins_an_opted_out_execution_nobody_waits_for() -> None:
    dedup = Deduplicator(cancel_abandoned=False)
    work = Work()
    await leave_once_started(lambda: dedup.run("key", work), work.started)
    work.release.set()
    assert await dedup.run("key", work) == ["result"]
    assert dedup.stats == DedupStats(calls=2, executions=1, shared=1, cache_hits=0, errors=0)


async def test_failure_of_an_execution_nobody_waits_for_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dedup = Deduplicator(cancel_abandoned=False)
    work = Work()
    work.error = ValueError("nobody is listening")
    await leave_once_started(lambda: dedup.run("key", work), work.started)
    with caplog.at_level(logging.WARNING, logger="botperf._dedup"):
        work.release.set()
        await eventually(lambda: settled(dedup))
    assert dedup.stats.errors == 1
    assert "after every caller had left" in caplog.text


async def test_abandoned_execution_raising_instead_of_ending_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dedup = Deduplicator()
    started = anyio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            raise ValueError("cleanup failed") from None

    with caplog.at_level(logging.WARNING, logger="botperf._dedup"):
        await leave_once_started(lambda: dedup.run("key", stubborn), started)
        await eventually(lambda: settled(dedup))
    assert "raised instead of ending" in caplog.text
    assert dedup.stats.errors == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_execution_cancelled_from_outside_fails_its_callers_instead_of_hanging() -> None:
    dedup = Deduplicator()
    work = Work()
    caught: list[BaseException] = []

    async def call() -> None:
        with pytest.raises(DedupCancelledError, match="cancelled from outside") as info:
            await dedup.run("key", work)
        caught.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        tg.start_soon(call)
        await work.started.wait()
        await eventually(lambda: dedup.stats.calls == 2)
        dedup._flights["key"].task.cancel()  # type: ignore[attr-defined]
    assert len(caught) == 2
    assert all(isinstance(exc.__cause__, asyncio.CancelledError) for exc in caught)
    assert work.saw_cancellation.is_set()
    assert dedup.stats.errors == 1
    assert settled(dedup)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_execution_cancelled_from_outside_before_its_first_step_fails_its_caller() -> None:
    dedup = Deduplicator()
    work = Work()
    caller = asyncio.create_task(dedup.run("key", work))

    def cancel_hosted_task() -> None:  # runs right after the caller's first step
        dedup._flights["key"].task.cancel()  # type: ignore[attr-defined]

    asyncio.get_running_loop().call_soon(cancel_hosted_task)
    with pytest.raises(DedupCancelledError):
        await caller
    assert dedup.stats.errors == 1
    assert settled(dedup)


async def test_forgotten_execution_is_cancelled_when_its_last_caller_leaves() -> None:
    dedup = Deduplicator()
    work = Work()
    async with anyio.create_task_group() as tg:
        tg.start_soon(dedup.run, "key", work)
        await work.started.wait()
        dedup.forget("key")
        tg.cancel_scope.cancel()
    await work.saw_cancellation.wait()
    await eventually(lambda: settled(dedup))


# 5. Nothing leaks.


async def test_nothing_remains_once_successes_errors_and_cancellations_settle() -> None:
    dedup = Deduplicator()
    ok, failing, abandoned = Work(), Work(), Work()
    ok.release.set()
    failing.release.set()
    failing.error = RuntimeError("down")
    await dedup.run("ok", ok)
    with pytest.raises(RuntimeError):
        await dedup.run("failing", failing)
    await leave_once_started(lambda: dedup.run("abandoned", abandoned), abandoned.started)
    await eventually(lambda: settled(dedup))
    assert dedup.in_flight == 0


async def test_memory_does_not_grow_over_10000_sequential_distinct_keys() -> None:
    dedup = Deduplicator()

    async def answer(key: int) -> int:
        return key

    for key in range(1_000):
        await dedup.run(key, answer, key)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for key in range(10_000):
            await dedup.run(key, answer, key)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Per-key state would be at least 10,000 x 100 B; a flat run stays within noise.
    assert after - before < 64 * 1024
    assert settled(dedup)


async def test_ttl_cache_holds_at_most_max_cached_results() -> None:
    dedup = Deduplicator(ttl=60, max_cached=3)

    async def answer(key: int) -> int:
        return key

    for key in range(10):
        await dedup.run(key, answer, key)
    assert dedup._cache is not None
    assert len(dedup._cache) == 3
    assert settled(dedup)


async def test_a_task_that_cannot_be_started_leaves_no_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("Nursery is closed to new arrivals")

    dedup = Deduplicator()
    flight_class = type(new_flight("probe"))
    monkeypatch.setattr(flight_class, "start", refuse)
    with pytest.raises(RuntimeError, match="closed"):
        await dedup.run("key", Work())
    assert settled(dedup)


# 7. Stats are exact.


async def test_stats_count_every_call_exactly_once() -> None:
    dedup = Deduplicator(ttl=60)
    work = Work()
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(dedup.run, "key", work)
        await eventually(lambda: dedup.stats.calls == 4)
        work.release.set()
    await dedup.run("key", work)
    failing = Work()
    failing.release.set()
    failing.error = KeyError("gone")
    with pytest.raises(KeyError):
        await dedup.run("other", failing)
    assert dedup.stats == DedupStats(calls=6, executions=2, shared=3, cache_hits=1, errors=1)
    assert_stats_identity(dedup.stats)


# The ttl cache, forget() and the options.


async def test_ttl_serves_a_successful_result_to_later_calls_until_it_expires() -> None:
    # The cache hit must come within ttl even on a stalled machine: 0.5 s is ample.
    dedup = Deduplicator(ttl=0.5)
    work = Work()
    work.release.set()
    first = await dedup.run("key", work)
    assert await dedup.run("key", work) is first
    await anyio.sleep(0.6)
    assert await dedup.run("key", work) is not first
    assert work.calls == 2


async def test_forget_drops_the_cached_result() -> None:
    dedup = Deduplicator(ttl=60)
    work = Work()
    work.release.set()
    await dedup.run("key", work)
    dedup.forget("key")
    await dedup.run("key", work)
    assert work.calls == 2


async def test_forget_starts_a_fresh_execution_while_earlier_callers_keep_theirs() -> None:
    dedup = Deduplicator(ttl=60)
    first, second = Work(), Work()
    results: list[object] = []

    async def call(work: Work) -> None:
        results.append(await dedup.run("key", work))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, first)
        await first.started.wait()
        dedup.forget("key")
        assert dedup.in_flight == 0
        tg.start_soon(call, second)
        await second.started.wait()
        first.release.set()
        await eventually(lambda: len(results) == 1)
        second.release.set()
    assert results == [["result"], ["result"]]
    assert results[0] is not results[1]
    assert await dedup.run("key", first) is results[1]  # the forgotten result is not cached
    assert settled(dedup)


def test_forget_of_an_unknown_key_does_nothing() -> None:
    Deduplicator(ttl=1).forget("never seen")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, r"ttl=0\): ttl must be a finite number of seconds, above 0"),
        ({"ttl": -1.0}, "ttl must be a finite number of seconds, above 0"),
        ({"ttl": math.inf}, "ttl must be a finite number of seconds, above 0"),
        ({"ttl": math.nan}, "ttl must be a finite number of seconds, above 0"),
        ({"ttl": "1"}, "ttl must be a finite number of seconds, above 0"),
        ({"ttl": True}, "ttl must be a finite number of seconds, above 0"),
        ({"max_cached": 0}, r"max_cached=0\): max_cached must be an int of at least 1"),
        ({"max_cached": 2.5}, "max_cached must be an int of at least 1"),
        ({"max_cached": "10"}, "max_cached must be an int of at least 1"),
        ({"max_chunks": 0}, "max_chunks must be an int of at least 1"),
        ({"max_chunks": 10.0}, "max_chunks must be an int of at least 1"),
        ({"cancel_abandoned": 1}, "cancel_abandoned must be True or False"),
        ({"cancel_abandoned": None}, "cancel_abandoned must be True or False"),
    ],
)
def test_invalid_options_fail_at_construction_naming_the_allowed_range(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidOptionError, match=message) as info:
        Deduplicator(**options)
    assert info.value.owner == "Deduplicator"
    assert (info.value.option, info.value.value) == next(iter(options.items()))
    with pytest.raises(InvalidOptionError, match=message):
        deduplicate(**options)


def test_repr_shows_in_flight_and_stats() -> None:
    assert repr(Deduplicator()) == (
        "<Deduplicator in_flight=0 "
        "DedupStats(calls=0, executions=0, shared=0, cache_hits=0, errors=0)>"
    )


# Unhashable keys.


async def test_unhashable_key_raises_dedup_key_error_naming_the_problem() -> None:
    dedup = Deduplicator()
    work = Work()
    with pytest.raises(TypeError, match=r"Deduplicator.run\(\).*unhashable type: 'list'"):
        await dedup.run(["not", "hashable"], work)
    with pytest.raises(TypeError, match=r"Deduplicator.forget\(\)"):
        dedup.forget({"a": 1})
    assert dedup.stats.calls == 0
    assert work.calls == 0


async def test_decorated_function_with_unhashable_arguments_names_itself() -> None:
    @deduplicate()
    async def lookup(tags: list[str]) -> int:
        return len(tags)

    with pytest.raises(TypeError, match=r"@deduplicate on .*lookup\(\)") as info:
        await lookup(["a"])
    assert info.value.key == ((["a"],),)


# The decorator.


async def test_decorator_keys_on_the_arguments_by_default() -> None:
    calls: list[tuple[str, str]] = []

    @deduplicate(ttl=60)
    async def ask(prompt: str, *, model: str = "small") -> str:
        calls.append((prompt, model))
        return f"{model}: {prompt}"

    assert await ask("hi") == "small: hi"
    assert await ask("hi") == "small: hi"
    assert await ask("hi", model="big") == "big: hi"
    assert await ask("hi", model="big") == "big: hi"
    assert calls == [("hi", "small"), ("hi", "big")]
    assert ask.deduplicator.stats.cache_hits == 2


async def test_decorator_uses_the_key_function() -> None:
    calls: list[str] = []

    @deduplicate(key=lambda prompt, model: (model, prompt.strip().casefold()), ttl=60)
    async def ask_llm(prompt: str, model: str) -> str:
        calls.append(prompt)
        return prompt.upper()

    assert await ask_llm("Hello ", "m") == "HELLO "
    assert await ask_llm("hello", "m") == "HELLO "
    assert calls == ["Hello "]
    assert ask_llm.__name__ == "ask_llm"
    assert isinstance(ask_llm.deduplicator, Deduplicator)


# Hosting.


def test_running_outside_any_event_loop_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="under asyncio or trio"):
        new_flight("key")
