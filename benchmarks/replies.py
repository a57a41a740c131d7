"""Streamed replies: ReplyStreamer against the example bot's renderer, and split_message.

Three measurements, each against the Discord example's own renderer
(formerly ``examples/discord_bot/edits.py`` and ``split.py``, kept as
``baseline_renderer.py`` and ``baseline_split.py``, which botperf's versions replaced) as the
baseline, in this process:

- feed cost (ns per chunk, median): a firehose of ``CHUNKS`` chunks fed as fast as possible
  into a fake target whose ``send``/``edit`` only count. With a 1 s interval the whole loop
  makes one platform call (the first message), so the time is the cost of ``feed`` itself,
  the platform's callables excluded. On asyncio and on trio.
- platform calls: the same chunks, into one message, spread over ``STREAM_SECONDS`` of
  simulated time (a fake clock, so no waiting), then ``finish()``: how many sends and edits
  reached the platform, against editing on every chunk. The issue's bound is elapsed time
  over the interval plus the first message and the final edit.
- split throughput (MB/s): splitting a 100 KB reply of prose, lists and code blocks into
  2,000-character messages.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from botperf import EditPacer, ReplyStreamer, split_message

from ._harness import Measurement, Report, Target, ns_per_op, tick
from .baseline_renderer import EditThrottle, StreamRenderer
from .baseline_split import split_message as example_split_message

CHUNKS = 10_000
STREAM_SECONDS = 20.0
INTERVAL = 1.0
REPLY_BYTES = 100_000
# The paced stream goes into one message, so that its calls count edits only (continuing a
# reply in new messages adds one paced send per message).
ONE_MESSAGE = 100_000
BOTPERF = "botperf ReplyStreamer"
EXAMPLE = "example StreamRenderer"
NAIVE = "edit on every chunk"
SPLITTERS = {BOTPERF: "botperf split_message", EXAMPLE: "example split_message"}


class Counter:
    """A fake target: counts the calls, stores nothing."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, text: str) -> int:
        self.calls += 1
        return self.calls

    async def edit(self, handle: int, text: str) -> None:
        self.calls += 1


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def make_reply(
    implementation: str,
    target: Counter,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    max_length: int,
) -> tuple[Callable[[str], Awaitable[None]], Callable[[], Awaitable[object]]]:
    """The implementation's `feed` and `finish` over `target`."""
    if implementation == BOTPERF:
        pacer = EditPacer(interval=INTERVAL, clock=clock, sleep=sleep)
        reply = ReplyStreamer(
            target.send, target.edit, target=1, pacer=pacer, max_length=max_length
        )
        return reply.feed, reply.finish
    throttle = EditThrottle(interval=INTERVAL, clock=clock)
    renderer = StreamRenderer(
        1, send=target.send, edit=target.edit, throttle=throttle, limit=max_length, sleep=sleep
    )
    return renderer.feed, renderer.finish


def chunks() -> list[str]:
    words = ["The", " answer", " is", " streamed", " token", " by", " token", ".", "\n"]
    return [words[index % len(words)] for index in range(CHUNKS)]


def feed_cost(backend: str, implementation: str) -> tuple[float, int]:
    """ns per `feed` call over a firehose, and the platform calls it made."""

    async def main() -> tuple[float, int]:
        target = Counter()
        feed, _ = make_reply(implementation, target, time.monotonic, anyio.sleep, 2000)
        stream = chunks()
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for chunk in stream:
                await feed(chunk)
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        return elapsed / len(stream), target.calls

    result: tuple[float, int] = anyio.run(main, backend=backend)
    return result


def platform_calls(implementation: str) -> int:
    """Sends and edits for the chunks spread over `STREAM_SECONDS` of fake time."""

    async def main() -> int:
        target = Counter()
        fake = FakeTime()
        step = STREAM_SECONDS / CHUNKS
        if implementation == NAIVE:
            text = ""
            handle = 0
            for chunk in chunks():
                fake.now += step
                text += chunk
                if handle:
                    await target.edit(handle, text)
                else:
                    handle = await target.send(text)
            return target.calls
        feed, finish = make_reply(implementation, target, fake.clock, fake.sleep, ONE_MESSAGE)
        for chunk in chunks():
            fake.now += step
            await feed(chunk)
        await finish()
        return target.calls

    calls: int = anyio.run(main, backend="asyncio")
    return calls


def long_reply() -> str:
    """About 100 KB of what an LLM writes: paragraphs, lists and fenced code blocks."""
    rng = random.Random(18)
    vocabulary = [
        *("the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with"),
        *("request", "response", "latency", "token", "stream", "message", "channel", "model"),
        *("function", "value", "error", "retry", "limit", "buffer", "event", "queue", "await"),
    ]
    pieces: list[str] = []
    size = 0
    while size < REPLY_BYTES:
        kind = rng.random()
        if kind < 0.5:
            sentences = [
                " ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 24))).capitalize()
                + "."
                for _ in range(rng.randint(2, 8))
            ]
            piece = " ".join(sentences)
        elif kind < 0.7:
            piece = "\n".join(
                f"- {' '.join(rng.choice(vocabulary) for _ in range(rng.randint(3, 12)))}"
                for _ in range(rng.randint(3, 8))
            )
        else:
            language = rng.choice(["python", "bash", "json", ""])
            lines = [
                "    " * rng.randint(0, 3)
                + " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 10)))
                for _ in range(rng.randint(5, 60))
            ]
            piece = f"```{language}\n" + "\n".join(lines) + "\n```"
        pieces.append(piece)
        size += len(piece) + 2
    return "\n\n".join(pieces)


def run(quick: bool) -> Report:
    repeat = 3 if quick else 15
    report = Report(name="replies: streamed replies")
    for backend in ("asyncio", "trio"):
        samples: dict[str, list[float]] = {EXAMPLE: [], BOTPERF: []}
        calls: dict[str, int] = {}
        for _ in range(repeat):
            for implementation in (EXAMPLE, BOTPERF):
                cost, calls[implementation] = feed_cost(backend, implementation)
                samples[implementation].append(cost)
                tick()
        report.measurements += [
            Measurement(
                group=f"feed cost, firehose of {CHUNKS:,} chunks on {backend}",
                implementation=implementation,
                unit="ns/chunk",
                samples=tuple(values),
                baseline=implementation == EXAMPLE,
                params={"platform calls while feeding": calls[implementation]},
            )
            for implementation, values in samples.items()
        ]
    counts = {
        implementation: platform_calls(implementation)
        for implementation in (NAIVE, EXAMPLE, BOTPERF)
    }
    tick()
    report.measurements += [
        Measurement(
            group=f"platform calls, {CHUNKS:,} chunks over {STREAM_SECONDS:.0f} s "
            f"(interval {INTERVAL:.0f} s)",
            implementation=implementation,
            unit="calls",
            samples=(float(count),),
            baseline=implementation == EXAMPLE,
        )
        for implementation, count in counts.items()
    ]
    text = long_reply()
    parts = {
        BOTPERF: len(split_message(text, max_length=2000)),
        EXAMPLE: len(example_split_message(text, limit=2000)),
    }
    number = 2 if quick else 5
    split_samples = {
        EXAMPLE: ns_per_op(
            lambda: example_split_message(text, limit=2000), number=number, repeat=repeat
        ),
        BOTPERF: ns_per_op(
            lambda: split_message(text, max_length=2000), number=number, repeat=repeat
        ),
    }
    report.measurements += [
        Measurement(
            group=f"split a {len(text) / 1000:.0f} KB reply with code blocks into "
            "2,000-character messages",
            implementation=SPLITTERS[name],
            unit="MB/s",
            samples=tuple(len(text) / 1e6 / (ns / 1e9) for ns in values),
            baseline=name == EXAMPLE,
            higher_is_better=True,
            params={"messages": parts[name]},
        )
        for name, values in split_samples.items()
    ]
    report.notes.append(
        f"split into {parts[BOTPERF]} messages by botperf, {parts[EXAMPLE]} by the example"
    )
    report.targets += [
        Target(
            description=f"feed cost per chunk, platform callables excluded ({backend})",
            measured=report.find(
                f"feed cost, firehose of {CHUNKS:,} chunks on {backend}", BOTPERF
            ).median
            / 1000,
            target=2.0,
            unit="µs",
        )
        for backend in ("asyncio", "trio")
    ]
    report.targets.append(
        Target(
            description=f"platform calls for {CHUNKS:,} chunks over {STREAM_SECONDS:.0f} s "
            "(elapsed / interval + first message + final edit)",
            measured=float(counts[BOTPERF]),
            target=STREAM_SECONDS / INTERVAL + 2,
            unit="calls",
        )
    )
    return report
