"""Checked by ``mypy --strict``: the typed API of the profiling helpers."""

from __future__ import annotations

import pstats

from typing_extensions import assert_type

from botperf import EventRecorder, LatencyRecorder, LatencyStats, profile, timed

recorder = LatencyRecorder(relative_accuracy=0.01)
assert_type(recorder.observe("cache.get", 0.0003), None)
assert_type(recorder.observe("cache.get", 0.2, error=True), None)
assert_type(recorder.summary(), dict[str, LatencyStats])
assert_type(recorder.summary()["cache.get"].p99, float)
assert_type(recorder.summary()["cache.get"].count, int)
assert_type(recorder | LatencyRecorder(), LatencyRecorder)
assert_type(recorder.merge(LatencyRecorder()), None)
assert_type(recorder.bucket_count, int)
assert_type(LatencyRecorder.default(), LatencyRecorder)


class Writer:
    def record(self, event: str, /, **fields: object) -> None: ...


events: EventRecorder = Writer()  # the protocol, satisfied without inheriting from it


@timed("ollama.chat", recorder=recorder, metrics=Writer())
async def chat(prompt: str, *, model: str = "llama3") -> str:
    return prompt


@timed("parse")
def parse(text: str) -> int:
    return len(text)


assert_type(parse("x"), int)
parse(3)  # type: ignore[arg-type]


async def call_chat() -> None:
    assert_type(await chat("hi", model="llama3.2"), str)
    await chat("hi", temperature=0.1)  # type: ignore[call-arg]


with timed("db.query", recorder=recorder) as timer:
    assert_type(timer, timed)
assert_type(timer.elapsed, float | None)


async def use_async_with() -> None:
    async with timed("db.query") as async_timer:
        assert_type(async_timer, timed)


with profile("startup.prof", top=20, sort="cumulative") as profiler:
    assert_type(profiler.stats, pstats.Stats | None)


@profile(top=5)
def startup(flag: bool) -> str:
    return str(flag)


assert_type(startup(True), str)
