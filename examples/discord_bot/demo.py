"""Demo mode: a burst of simulated users against a fake Ollama, measured live.

Needs neither Discord nor Ollama. `run_demo` starts
`FakeOllama` on 127.0.0.1, builds a `BotCore` on an
`OllamaChat` pointed at it, and plays `plan`: in each round every channel
gets one message at (almost) the same moment. Channels follow a few conversation *tracks*:
all channels of a track ask the same questions in the same order, so their histories stay
identical and many users ask the same thing at once, which the core's Deduplicator collapses
into one LLM call. There are more channels than the core's ``max_channels``, so the
HistoryStore evicts some; an evicted channel starts its conversation afresh and no longer
shares calls with its track (it shares them with the other evicted channels of its track).
Rounds run one after another, because each round's history feeds the next. Every reply is
streamed (`stream`), as the Discord bot does.

A last, *mid-stream* round (`mid_stream_round`) shows what shared streams save: new
channels ask one new question, a first wave at once, then a second wave of *late joiners*
once the first words of the reply have arrived, while it is still streaming. They join the
running stream, get the words already produced at once, then the rest, and cost no LLM call;
the table counts the calls the fake server received while they joined.

The table printed at the end is measured on that run, each *section* of it a function of the
`DemoOutcome` returning `Row` objects (`SECTIONS`).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import NamedTuple, TextIO, final

import anyio

from examples.chatcore.core import BotCore
from examples.chatcore.fake_ollama import FakeOllama
from examples.chatcore.llm import OllamaChat

__all__ = [
    "MID_STREAM_QUESTION",
    "QUESTIONS",
    "SECTIONS",
    "DemoConfig",
    "DemoOutcome",
    "ProgressBar",
    "Row",
    "format_table",
    "history_rows",
    "latency_rows",
    "metrics_rows",
    "mid_stream_round",
    "mid_stream_rows",
    "percentile",
    "plan",
    "report",
    "run_demo",
    "traffic_rows",
]

QUESTIONS = (
    "How do I reverse a list in Python?",
    "What is the difference between a process and a thread?",
    "How does an LRU cache work?",
    "Why is my Discord bot not seeing message content?",
    "What does async/await actually do?",
    "How do I read a file line by line?",
    "What is a race condition?",
    "How do I measure the latency of a function?",
    "What is JSON Lines?",
    "How do I pull a model with Ollama?",
    "What is exponential backoff?",
    "How do I write a systemd service?",
    "What is a p99 latency?",
    "How do rate limits work on Discord?",
    "What is single-flight deduplication?",
    "How do I keep chat history short for an LLM?",
    "What is a context window?",
    "How do I stream a reply token by token?",
    "What is structured concurrency?",
    "How do I cancel a task cleanly?",
    "What is the GIL?",
    "How do I batch writes to disk?",
    "What is a token in an LLM?",
    "How do I profile Python code?",
)

MID_STREAM_QUESTION = "Can several users share one streamed reply?"
"""What every channel of the mid-stream round asks (no conversation track asks it)."""


@dataclass(frozen=True)
class DemoConfig:
    """The simulated burst and the fake server's speed.

    Args:
        channels: channels with users talking at once.
        rounds: messages per channel, one round after another.
        tracks: distinct conversations; channel ``c`` follows track ``c % tracks``.
        max_channels: channels whose history the core keeps (its HistoryStore's
            ``max_channels``); fewer than ``channels`` shows eviction.
        arrival_spread: seconds over which one round's messages arrive.
        time_to_first_token: the fake server's delay before the first token, seconds.
        token_delay: the fake server's delay between tokens, seconds.
        reply_tokens: tokens per canned reply.
        first_wave: channels asking at once in the mid-stream round.
        late_joiners: channels asking the same, in the mid-stream round, once the reply has
            begun streaming (spread over ``arrival_spread``); 0 skips the round.
        seed: seeds the arrival jitter, so two runs send the same burst.
    """

    channels: int = 120
    rounds: int = 4
    tracks: int = 6
    max_channels: int = 100
    arrival_spread: float = 0.05
    time_to_first_token: float = 0.25
    token_delay: float = 0.015
    reply_tokens: int = 32
    first_wave: int = 20
    late_joiners: int = 40
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("channels", "rounds", "tracks", "max_channels", "reply_tokens", "first_wave"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.late_joiners < 0:
            raise ValueError(f"late_joiners must be >= 0, got {self.late_joiners}")
        for name in ("arrival_spread", "time_to_first_token", "token_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")

    @property
    def messages(self) -> int:
        """How many messages the run sends."""
        mid_stream = self.first_wave + self.late_joiners if self.late_joiners else 0
        return self.channels * self.rounds + mid_stream


class Message(NamedTuple):
    """One simulated user message."""

    channel_id: int
    author: str
    text: str
    delay: float
    """Seconds after the start of its round (for a late joiner: after the first words)."""
    late: bool = False
    """Whether it is sent once the reply it shares has begun streaming."""


class Row(NamedTuple):
    """One line of the results table."""

    label: str
    value: str
    note: str = ""


def plan(config: DemoConfig) -> list[list[Message]]:
    """The messages of each round, deterministic for a given config."""
    jitter = random.Random(config.seed)
    rounds: list[list[Message]] = []
    for round_ in range(config.rounds):
        messages = []
        for channel in range(config.channels):
            track = channel % config.tracks
            question = QUESTIONS[(track * config.rounds + round_) % len(QUESTIONS)]
            author = f"user{channel:03d}-{round_ % 3}"
            delay = jitter.uniform(0, config.arrival_spread)
            messages.append(Message(1000 + channel, author, question, delay))
        rounds.append(messages)
    return rounds


def mid_stream_round(config: DemoConfig) -> list[Message]:
    """The messages of the mid-stream round, deterministic for a given config.

    New channels (no history, so one prompt for all) ask `MID_STREAM_QUESTION`: the
    ``first_wave`` ones at once, then the ``late_joiners`` (``late=True``). Empty when
    ``late_joiners`` is 0.
    """
    if not config.late_joiners:
        return []
    jitter = random.Random(config.seed + 1)
    first = 1000 + config.channels  # past the channels of the conversation tracks
    return [
        Message(
            first + index,
            f"user{first + index}",
            MID_STREAM_QUESTION,
            jitter.uniform(0, config.arrival_spread),
            late=index >= config.first_wave,
        )
        for index in range(config.first_wave + config.late_joiners)
    ]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in [0, 1]) of ``values``; 0.0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(max(math.ceil(fraction * len(ordered)), 1), len(ordered))
    return ordered[rank - 1]


@final
class ProgressBar:
    """A progress bar on a text stream (stderr): one line redrawn in place on a terminal, a
    line per quarter otherwise (logs, pipes)."""

    def __init__(self, total: int, *, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream
        self._width = width
        self._interactive = stream.isatty()
        self._steps = width if self._interactive else 4
        self._drawn = 0

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more finished items and redraw if the bar moved."""
        self.done += count
        step = self._steps * self.done // self.total
        if step == self._drawn:
            return
        self._drawn = step
        filled = self._width * self.done // self.total
        bar = "#" * filled + "." * (self._width - filled)
        line = f"  [{bar}] {self.done}/{self.total} messages"
        self._stream.write(f"\r{line}" if self._interactive else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._interactive:
            self._stream.write("\n")
            self._stream.flush()


@dataclass(frozen=True)
class DemoOutcome:
    """What one run measured. ``core`` is the (closed) core it ran, for its stats."""

    config: DemoConfig
    core: BotCore
    messages: int
    failed: int
    """Replies that explain a failure instead of answering."""
    llm_calls: int
    """``/api/chat`` requests the fake server received (its own count)."""
    latencies: tuple[float, ...]
    """Seconds from each message to its complete reply."""
    first_words: tuple[float, ...]
    """Seconds from each message to the first piece of its streamed reply."""
    wall: float
    """Seconds the whole burst took."""
    mid_stream_joins: int
    """Late joiners of the mid-stream round that asked while the reply was streaming."""
    mid_stream_calls: int
    """``/api/chat`` requests the server received from the late joiners' release to the end."""


def traffic_rows(outcome: DemoOutcome) -> list[Row]:
    """Messages, replies, and the LLM calls they cost, counted by the server and by the core."""
    executions = outcome.core.dedup.stats.executions
    saved = outcome.messages - outcome.llm_calls
    share = saved / outcome.messages if outcome.messages else 0.0
    config = outcome.config
    agree = "they agree" if executions == outcome.llm_calls else "THEY DISAGREE"
    sent = f"{config.channels} channels x {config.rounds} rounds, {config.tracks} conversations"
    if config.late_joiners:
        sent += f", + {config.first_wave + config.late_joiners} mid-stream"
    return [
        Row("messages sent", f"{outcome.messages}", sent),
        Row("replies ok / failed", f"{outcome.messages - outcome.failed} / {outcome.failed}"),
        Row(
            "LLM calls made",
            f"{outcome.llm_calls} / {executions}",
            f"Ollama server's count / Deduplicator executions: {agree}",
        ),
        Row("LLM calls saved", f"{saved} ({share:.0%})", "messages that shared another's call"),
    ]


def latency_rows(outcome: DemoOutcome) -> list[Row]:
    """Reply latency percentiles and throughput."""
    values = outcome.latencies
    rate = outcome.messages / outcome.wall if outcome.wall else 0.0
    config = outcome.config
    return [
        Row(
            "reply latency p50 / p99",
            f"{percentile(values, 0.5) * 1e3:.0f} / {percentile(values, 0.99) * 1e3:.0f} ms",
            f"model: {config.time_to_first_token * 1e3:.0f} ms to first token + "
            f"{config.reply_tokens} x {config.token_delay * 1e3:.0f} ms",
        ),
        Row(
            "first words p50 / p99",
            f"{percentile(outcome.first_words, 0.5) * 1e3:.0f} / "
            f"{percentile(outcome.first_words, 0.99) * 1e3:.0f} ms",
            "streamed: the first piece of each reply",
        ),
        Row("wall time", f"{outcome.wall:.1f} s", f"{rate:.0f} messages/s"),
    ]


def mid_stream_rows(outcome: DemoOutcome) -> list[Row]:
    """The mid-stream round: late joiners and the LLM calls they cost (none, shared)."""
    config = outcome.config
    if not config.late_joiners:
        return []
    return [
        Row(
            "late joiners (mid-stream) / extra LLM calls",
            f"{outcome.mid_stream_joins} / {outcome.mid_stream_calls}",
            f"joined a reply already streaming to {config.first_wave} channels "
            "(Ollama server's count)",
        )
    ]


def history_rows(outcome: DemoOutcome) -> list[Row]:
    """Channels the HistoryStore holds and has evicted."""
    stats = outcome.core.history.stats
    return [
        Row(
            "channels held / evicted",
            f"{stats.channels} / {stats.evictions}",
            f"HistoryStore, max_channels={outcome.config.max_channels}",
        )
    ]


def metrics_rows(outcome: DemoOutcome) -> list[Row]:
    """Metric events recorded, written, and the disk writes they took."""
    stats = outcome.core.metrics.stats
    per_write = stats.written / stats.batches if stats.batches else 0.0
    return [
        Row(
            "metric events recorded / written",
            f"{stats.recorded} / {stats.written}",
            f"BatchMetricsWriter, {stats.dropped} dropped",
        ),
        Row("disk writes", f"{stats.batches}", f"{per_write:.0f} events per write"),
    ]


SECTIONS: tuple[Callable[[DemoOutcome], Iterable[Row]], ...] = (
    traffic_rows,
    mid_stream_rows,
    latency_rows,
    history_rows,
    metrics_rows,
)
"""The table's sections, in order."""


def format_table(rows: Iterable[Row]) -> str:
    """Align rows into a plain-text table."""
    rows = list(rows)
    label_width = max((len(row.label) for row in rows), default=0)
    value_width = max((len(row.value) for row in rows), default=0)
    lines = []
    for row in rows:
        line = f"  {row.label:<{label_width}}  {row.value:>{value_width}}"
        lines.append(f"{line}  {row.note}".rstrip() if row.note else line)
    return "\n".join(lines)


def report(outcome: DemoOutcome) -> str:
    """The results table: the rows of every section, in order."""
    return format_table(row for section in SECTIONS for row in section(outcome))


async def run_demo(
    config: DemoConfig,
    metrics_path: str | os.PathLike[str],
    *,
    progress: TextIO | None = sys.stderr,
) -> DemoOutcome:
    """Run the burst against a fresh fake Ollama and measure it.

    Args:
        config: the burst.
        metrics_path: the file the core appends its metric events to.
        progress: where the progress bar goes, ``None`` for none.

    Returns:
        The measurements, with the core, closed (its metrics written), for its stats.
    """
    with FakeOllama(
        time_to_first_token=config.time_to_first_token,
        token_delay=config.token_delay,
        reply_tokens=config.reply_tokens,
    ) as server:
        core = BotCore(
            OllamaChat(host=server.url, model="llama3.2", timeout=30.0),
            metrics_path=metrics_path,
            max_channels=config.max_channels,
        )
        latencies: list[float] = []
        first_words: list[float] = []
        bar = ProgressBar(config.messages, stream=progress) if progress else None
        streaming = anyio.Event()  # the mid-stream round's reply has begun
        streamed = anyio.Event()  # ... and has ended
        calls_at_release = 0
        mid_stream_joins = 0

        async def one(message: Message) -> None:
            nonlocal calls_at_release, mid_stream_joins
            mid_stream = message.text == MID_STREAM_QUESTION
            if message.late:
                await streaming.wait()
            await anyio.sleep(message.delay)
            if message.late and not streamed.is_set():
                mid_stream_joins += 1
            started = time.perf_counter()
            waiting = True
            reply = core.stream(message.channel_id, message.author, message.text)
            async with aclosing(reply):
                async for _ in reply:
                    if waiting:
                        waiting = False
                        first_words.append(time.perf_counter() - started)
                        if mid_stream and not streaming.is_set():
                            calls_at_release = server.count("/api/chat")
                            streaming.set()
            latencies.append(time.perf_counter() - started)
            if mid_stream:
                streamed.set()
            if bar is not None:
                bar.advance()

        await core.start()
        started = time.perf_counter()
        mid_stream_calls = 0
        try:
            for messages in [*plan(config), mid_stream_round(config)]:
                async with anyio.create_task_group() as group:
                    for message in messages:
                        group.start_soon(one, message)
            if config.late_joiners:
                mid_stream_calls = server.count("/api/chat") - calls_at_release
        finally:
            wall = time.perf_counter() - started
            if bar is not None:
                bar.close()
            await core.aclose()
        return DemoOutcome(
            config=config,
            core=core,
            messages=len(latencies),
            failed=sum(core.errors.values()),  # counted once per message
            llm_calls=server.count("/api/chat"),
            latencies=tuple(latencies),
            first_words=tuple(first_words),
            wall=wall,
            mid_stream_joins=mid_stream_joins,
            mid_stream_calls=mid_stream_calls,
        )
