from __future__ import annotations

import cProfile
import inspect
import io
import logging
import pstats
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from botperf import BotperfError, InvalidOptionError, LatencyRecorder, profile, timed


class RecordingMetrics:
    """The metrics protocol, keeping what was recorded."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def record(self, event: str, /, **fields: object) -> None:
        self.events.append((event, fields))


class BrokenMetrics:
    def record(self, event: str, /, **fields: object) -> None:
        raise OSError("the writer is closed")


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


# --- timed ----------------------------------------------------------------------------


def test_decorated_sync_function_returns_its_result_and_is_recorded() -> None:
    recorder = LatencyRecorder()

    @timed("add", recorder=recorder)
    def add(a: int, b: int = 0) -> int:
        return a + b

    assert add(2, b=3) == 5
    assert add(1) == 1
    stats = recorder.summary()["add"]
    assert (stats.count, stats.errors) == (2, 0)
    assert stats.max >= stats.p50 >= 0.0


def test_decorated_function_keeps_its_name_docstring_and_signature() -> None:
    @timed("add", recorder=LatencyRecorder())
    def add(a: int, b: int = 0) -> int:
        """Add."""
        return a + b

    assert add.__name__ == "add"
    assert add.__doc__ == "Add."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 0) -> 'int'"


def test_decorated_sync_function_that_raises_is_recorded_as_an_error() -> None:
    recorder = LatencyRecorder()
    failure = KeyError("missing")

    @timed("lookup", recorder=recorder)
    def lookup() -> None:
        raise failure

    with pytest.raises(KeyError) as error:
        lookup()
    assert error.value is failure
    assert error.value.__context__ is None
    stats = recorder.summary()["lookup"]
    assert (stats.count, stats.errors) == (1, 1)


@pytest.mark.anyio
async def test_decorated_async_function_is_awaited_and_recorded() -> None:
    recorder = LatencyRecorder()

    @timed("chat", recorder=recorder)
    async def chat(prompt: str) -> str:
        await anyio.lowlevel.checkpoint()
        return prompt.upper()

    assert inspect.iscoroutinefunction(chat)
    assert await chat("hi") == "HI"
    assert recorder.summary()["chat"].count == 1


@pytest.mark.anyio
async def test_decorated_async_function_that_raises_is_recorded_as_an_error() -> None:
    recorder = LatencyRecorder()

    @timed("chat", recorder=recorder)
    async def chat() -> None:
        await anyio.lowlevel.checkpoint()
        raise TimeoutError("the model is slow")

    with pytest.raises(TimeoutError, match="the model is slow"):
        await chat()
    assert recorder.summary()["chat"].errors == 1


@pytest.mark.anyio
async def test_a_cancelled_async_call_is_recorded_as_an_error() -> None:
    recorder = LatencyRecorder()

    @timed("chat", recorder=recorder)
    async def chat() -> None:
        await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        scope.cancel()
        await chat()
    assert scope.cancelled_caught
    assert recorder.summary()["chat"].errors == 1


@pytest.mark.anyio
async def test_decorated_async_function_times_concurrent_calls_separately() -> None:
    recorder = LatencyRecorder()
    release = anyio.Event()

    @timed("wait", recorder=recorder)
    async def wait() -> None:
        await release.wait()

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert recorder.summary()["wait"].count == 5


def test_with_block_is_recorded_and_exposes_elapsed() -> None:
    recorder = LatencyRecorder()
    with timed("db.query", recorder=recorder) as timer:
        assert timer.elapsed is None
    assert timer.elapsed is not None
    assert recorder.summary()["db.query"].max == timer.elapsed


def test_with_block_that_raises_is_recorded_and_the_exception_propagates() -> None:
    recorder = LatencyRecorder()
    failure = ValueError("bad row")
    with pytest.raises(ValueError, match="bad row") as error, timed("db", recorder=recorder):
        raise failure
    assert error.value is failure
    assert recorder.summary()["db"].errors == 1


@pytest.mark.anyio
async def test_async_with_block_is_recorded_with_errors() -> None:
    recorder = LatencyRecorder()
    async with timed("db", recorder=recorder):
        await anyio.lowlevel.checkpoint()
    with pytest.raises(RuntimeError):
        async with timed("db", recorder=recorder):
            raise RuntimeError("lost connection")
    stats = recorder.summary()["db"]
    assert (stats.count, stats.errors) == (2, 1)


def test_one_timed_object_can_time_blocks_one_after_another() -> None:
    recorder = LatencyRecorder()
    timer = timed("step", recorder=recorder)
    for _ in range(3):
        with timer:
            pass
    assert recorder.summary()["step"].count == 3


def test_entering_a_timed_object_that_is_already_timing_is_refused() -> None:
    recorder = LatencyRecorder()
    timer = timed("step", recorder=recorder)
    with timer, pytest.raises(RuntimeError, match="already timing") as error, timer:
        pass  # pragma: no cover - never reached
    assert isinstance(error.value, RuntimeError)
    assert isinstance(error.value, BotperfError)
    assert error.value.name == "step"
    assert recorder.summary()["step"].count == 1


@pytest.mark.anyio
async def test_entering_a_timed_object_that_is_already_timing_is_refused_in_async_with() -> None:
    recorder = LatencyRecorder()
    timer = timed("step", recorder=recorder)
    async with timer:
        with pytest.raises(RuntimeError):
            async with timer:
                pass  # pragma: no cover - never reached
    assert recorder.summary()["step"].count == 1


def test_without_a_recorder_timings_go_to_the_default_recorder() -> None:
    name = "test_profiling.default"
    before = LatencyRecorder.default().summary().get(name)
    timer = timed(name)
    with timer:
        pass
    assert timer.recorder is LatencyRecorder.default()
    assert timer.name == name
    assert LatencyRecorder.default().summary()[name].count == (before.count if before else 0) + 1


def test_metrics_get_one_event_per_timing_with_duration_ms_and_error() -> None:
    recorder, metrics = LatencyRecorder(), RecordingMetrics()

    @timed("ollama.chat", recorder=recorder, metrics=metrics)
    def chat(fail: bool) -> None:
        if fail:
            raise ConnectionError

    chat(False)
    with pytest.raises(ConnectionError):
        chat(True)
    assert [(event, fields["error"]) for event, fields in metrics.events] == [
        ("ollama.chat", False),
        ("ollama.chat", True),
    ]
    recorded_ms = sorted(fields["duration_ms"] for _, fields in metrics.events)  # type: ignore[type-var]
    assert recorded_ms[-1] == pytest.approx(recorder.summary()["ollama.chat"].max * 1000.0)


@pytest.mark.anyio
async def test_metrics_get_events_from_async_with_blocks() -> None:
    metrics = RecordingMetrics()
    async with timed("db", recorder=LatencyRecorder(), metrics=metrics) as timer:
        await anyio.lowlevel.checkpoint()
    assert timer.elapsed is not None
    assert metrics.events == [("db", {"duration_ms": timer.elapsed * 1000.0, "error": False})]


def test_a_failing_metrics_writer_is_logged_and_does_not_disturb_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = LatencyRecorder()

    @timed("op", recorder=recorder, metrics=BrokenMetrics())
    def op() -> int:
        return 7

    with caplog.at_level(logging.ERROR, logger="botperf._profiling"):
        assert op() == 7
    assert recorder.summary()["op"].count == 1
    assert "timed('op') could not record its timing" in caplog.text
    assert "the writer is closed" in caplog.text


def test_repr_names_the_timing() -> None:
    assert repr(timed("op", recorder=LatencyRecorder())).startswith("timed('op', recorder=")


# --- profile --------------------------------------------------------------------------


def test_profile_writes_a_loadable_prof_file_and_prints_the_top_functions(
    tmp_path: Path,
) -> None:
    path, output = tmp_path / "startup.prof", io.StringIO()
    with profile(path, top=5, stream=output) as profiler:
        fib(15)
    stats = pstats.Stats(str(path))
    assert any(function == "fib" for _, _, function in stats.stats)  # type: ignore[attr-defined]
    printed = output.getvalue()
    assert (
        f"botperf.profile: top 5 functions by cumulative; the full profile is in {path}" in printed
    )
    assert "(fib)" in printed
    assert "Ordered by: cumulative time" in printed
    assert profiler.stats is not None


def test_profile_without_a_path_prints_to_stdout_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with profile(sort="tottime"):
        fib(10)
    out = capsys.readouterr().out
    assert "top 20 functions by tottime" in out
    assert "(fib)" in out
    assert list(tmp_path.iterdir()) == []


def test_profile_with_top_zero_prints_nothing_but_keeps_stats(tmp_path: Path) -> None:
    output = io.StringIO()
    with profile(tmp_path / "p.prof", top=0, stream=output) as profiler:
        fib(5)
    assert output.getvalue() == ""
    assert profiler.stats is not None
    assert (tmp_path / "p.prof").exists()


def test_profile_of_a_block_that_raises_still_writes_and_propagates(tmp_path: Path) -> None:
    path = tmp_path / "crash.prof"
    with (
        pytest.raises(ZeroDivisionError),
        profile(path, top=1, stream=io.StringIO()),
    ):
        fib(5) / 0
    assert pstats.Stats(str(path)).total_calls > 0  # type: ignore[attr-defined]


def test_profile_as_a_decorator_profiles_each_call(tmp_path: Path) -> None:
    output = io.StringIO()

    @profile(tmp_path / "fib.prof", top=3, stream=output)
    def compute(n: int) -> int:
        return fib(n)

    assert compute(10) == 55
    assert compute(11) == 89
    assert output.getvalue().count("botperf.profile: top 3") == 2
    assert (tmp_path / "fib.prof").exists()


@pytest.mark.anyio
async def test_profile_as_a_decorator_of_an_async_function(tmp_path: Path) -> None:
    output = io.StringIO()

    @profile(top=3, stream=output)
    async def compute(n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return fib(n)

    assert await compute(10) == 55
    assert "botperf.profile: top 3" in output.getvalue()


def test_entering_a_profile_that_is_already_profiling_is_refused() -> None:
    outer = profile(top=0)
    with outer, pytest.raises(RuntimeError, match="profile"), outer:
        pass  # pragma: no cover - never reached


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"top": -1}, r"profile\(top=-1\): top must be an int of at least 0"),
        ({"top": 2.5}, r"profile\(top=2.5\): top must be an int of at least 0"),
        ({"sort": "slowest"}, r"profile\(sort='slowest'\): sort must be one of .*cumulative"),
        ({"sort": ["calls"]}, r"sort must be one of"),
    ],
)
def test_profile_rejects_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        profile(**options)  # type: ignore[arg-type]


def test_profile_repr_shows_its_options() -> None:
    assert repr(profile("x.prof", top=3)) == "profile('x.prof', top=3, sort='cumulative')"


def first_call_work() -> int:
    return fib(10)


def second_call_work() -> int:
    return fib(11)


def profiled_functions(profiler: profile) -> set[str]:
    assert profiler.stats is not None
    return {function for _, _, function in profiler.stats.stats}  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_overlapping_calls_of_a_decorated_coroutine_profile_the_first_and_skip_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    profiler = profile(top=0)

    @profiler
    async def handle(first_started: anyio.Event, second_done: anyio.Event, tag: str) -> int:
        if tag == "first":
            first_started.set()
            await second_done.wait()
            return first_call_work()  # after the overlapping call has finished
        second_done.set()
        return second_call_work()

    with caplog.at_level(logging.WARNING, logger="botperf._profiling"):
        for _ in range(2):
            first_started, second_done = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as group:
                group.start_soon(handle, first_started, second_done, "first")
                await first_started.wait()
                assert await handle(first_started, second_done, "second") == 89
    assert profiler.skipped == 2
    assert "first_call_work" in profiled_functions(profiler)
    [record] = caplog.records
    assert "ran unprofiled because it overlapped another profile" in record.getMessage()


def test_profile_nested_in_another_is_skipped_and_the_outer_goes_on() -> None:
    outer, inner = profile(top=0), profile(top=0)
    with outer:
        with inner:
            second_call_work()
        first_call_work()
    assert (outer.skipped, inner.skipped) == (0, 1)
    assert inner.stats is None
    assert {"first_call_work", "second_call_work"} <= profiled_functions(outer)


def test_profile_after_a_block_that_raised_is_not_skipped() -> None:
    with pytest.raises(ZeroDivisionError), profile(top=0):
        fib(3) / 0
    with profile(top=0) as after:
        first_call_work()
    assert after.skipped == 0
    assert "first_call_work" in profiled_functions(after)


def test_profile_refused_by_cprofile_runs_the_block_unprofiled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: cProfile.Profile) -> None:
        raise ValueError("Another profiling tool is already active")

    monkeypatch.setattr(cProfile.Profile, "enable", refuse)
    with caplog.at_level(logging.WARNING, logger="botperf._profiling"), profile() as refused:
        first_call_work()
    assert (refused.skipped, refused.stats) == (1, None)
    assert "Another profiling tool is already active" in caplog.text
    monkeypatch.undo()
    with profile(top=0) as after:
        first_call_work()
    assert after.skipped == 0
