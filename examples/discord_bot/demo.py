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

A *flood* round (`flood_round`) shows admission control: one user sends ``flood`` different
messages at once. The core's per-user `RateLimiter` admits a burst of them and refuses the
rest (the first refused one gets a "slow down" notice, the others nothing); the admitted ones
queue for the model's ``llm_slots`` slots (the core's `FairLimiter`). Then other users ask
while that queue stands, and get the next slots, round-robin, instead of waiting behind it.
The round is staged so its order depends on no timing: the fake server holds its requests
until the flood's messages have all been admitted or refused and the other users' calls
have all joined the queue, then answers them in the order the slots are handed out.

A *prompt-cache* round (`cache_round`) shows what ``trim="stable"`` saves a model that
caches its prompts: one long conversation (`cache_conversation`, ``cache_turns`` user
turns on one channel) is played twice, through a fresh core with ``trim="sliding"`` and
one with ``trim="stable"`` (the bot's default), both summarizing what they trim as the bot
ships, each against a fresh fake Ollama whose ``prompt_eval_count`` models Ollama's
prompt cache. It counts, from that server, the prompt tokens evaluated and sent.

While it runs, the core's primitives are served on ``/metrics`` (`MetricsServer`, on
127.0.0.1); the end of the run scrapes it over HTTP, and the report shows a few lines of it.

The table printed at the end is measured on that run, each *section* of it a function of the
`DemoOutcome` returning `Row` objects (`SECTIONS`).
"""

from __future__ import annotations

import functools
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, TextIO, final

import anyio
import httpx

from botperf import RateLimiter, read_metrics
from examples.chatcore.core import DEFAULT_LLM_SLOTS, SUMMARY_PROMPT, BotCore, slow_down_notice
from examples.chatcore.fake_ollama import FakeOllama, prompt_tokens
from examples.chatcore.llm import OllamaChat
from examples.chatcore.monitoring import MetricsServer

__all__ = [
    "AFTER_FLOOD_QUESTIONS",
    "CACHE_CHANNEL",
    "FLOOD_PREFIX",
    "MID_STREAM_QUESTION",
    "QUESTIONS",
    "SECTIONS",
    "CacheOutcome",
    "CacheRun",
    "DemoConfig",
    "DemoOutcome",
    "ProgressBar",
    "Row",
    "cache_conversation",
    "cache_round",
    "cache_rows",
    "flood_round",
    "flood_rows",
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
    "scrape_sample",
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

FLOOD_PREFIX = "Flood message"
"""How each of the flooding user's messages starts (each is different: none shares a call)."""

AFTER_FLOOD_QUESTIONS = (
    "How do I stop one user from flooding my bot?",
    "What is a token bucket?",
    "What is round-robin scheduling?",
    "How many requests can Ollama serve at once?",
    "What is head-of-line blocking?",
    "How do I size a connection pool?",
)
"""What the other users of the flood round ask (no conversation track asks them)."""

CACHE_CHANNEL = 999
"""The channel of the prompt-cache round (its cores and servers are its own)."""

_SETUP_WORDS = (
    "asyncio", "trio", "anyio", "discord.py", "aiogram", "ollama", "llama3.2", "httpx",
    "redis", "systemd", "docker", "uvloop", "python3.12", "venv", "pip", "intents",
    "gateway", "shard", "cog", "slash", "command", "embed", "webhook", "reply", "stream",
    "token", "prompt", "context", "history", "channel", "guild", "timeout", "retry",
    "error", "traceback", "log", "latency", "queue", "slot", "model", "GPU", "CPU",
)  # fmt: skip
"""Words the prompt-cache round's users paste after their question (setups, logs)."""

_SLOW_DOWN = slow_down_notice(1.0).split(" 1 s")[0]  # "Slow down, try again in"


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
        flood: messages one user sends at once in the flood round; 0 skips the round.
        flood_users: other users asking, in channels of their own, while the flood's calls
            wait for a slot.
        flood_questions: distinct questions among them (``flood_users`` spread over
            them): users asking the same share one call, and one slot.
        rate_limit: messages per minute each user may send (the core's `RateLimiter`,
            bursts of as many); 0 admits every message.
        llm_slots: Ollama calls the core runs at once (its `FairLimiter`).
        cache_turns: user turns of the prompt-cache round's conversation, played once per
            trim mode; 0 skips the round.
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
    flood: int = 100
    flood_users: int = 20
    flood_questions: int = 4
    rate_limit: float = 10.0
    llm_slots: int = DEFAULT_LLM_SLOTS
    cache_turns: int = 60
    seed: int = 7

    def __post_init__(self) -> None:
        for name in (
            "channels",
            "rounds",
            "tracks",
            "max_channels",
            "reply_tokens",
            "first_wave",
            "flood_users",
            "llm_slots",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("late_joiners", "flood", "rate_limit", "cache_turns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.flood_questions <= len(AFTER_FLOOD_QUESTIONS):
            raise ValueError(
                f"flood_questions must be 1 to {len(AFTER_FLOOD_QUESTIONS)}, "
                f"got {self.flood_questions}"
            )
        for name in ("arrival_spread", "time_to_first_token", "token_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")

    @property
    def messages(self) -> int:
        """How many messages the burst sends (the prompt-cache round's are its own)."""
        mid_stream = self.first_wave + self.late_joiners if self.late_joiners else 0
        flood = self.flood + self.flood_users if self.flood else 0
        return self.channels * self.rounds + mid_stream + flood


class Message(NamedTuple):
    """One simulated user message."""

    channel_id: int
    author: str
    text: str
    delay: float
    """Seconds after the start of its round (for a late joiner: after the first words)."""
    late: bool = False
    """Whether it is sent once the reply it shares has begun streaming (or, in the flood
    round, once the flood's calls are queued)."""


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


def flood_round(config: DemoConfig) -> list[Message]:
    """The messages of the flood round, deterministic for a given config.

    One user, in a channel of its own, sends ``flood`` different messages at once (each
    starting with `FLOOD_PREFIX`); ``flood_users`` other users, each in a new channel, ask
    one of the first ``flood_questions`` `AFTER_FLOOD_QUESTIONS` (``late=True``: they ask
    once the flood's calls wait for a slot). Empty when ``flood`` is 0.
    """
    if not config.flood:
        return []
    jitter = random.Random(config.seed + 2)
    first = 1000 + config.channels + config.first_wave + config.late_joiners
    flood = [
        Message(
            first,
            "flooder",
            f"{FLOOD_PREFIX} {index}: {QUESTIONS[index % len(QUESTIONS)]}",
            jitter.uniform(0, config.arrival_spread),
        )
        for index in range(config.flood)
    ]
    others = [
        Message(
            first + 1 + index,
            f"user{first + 1 + index}",
            AFTER_FLOOD_QUESTIONS[index % config.flood_questions],
            jitter.uniform(0, config.arrival_spread),
            late=True,
        )
        for index in range(config.flood_users)
    ]
    return flood + others


def cache_conversation(config: DemoConfig) -> list[str]:
    """The user messages of the prompt-cache round, deterministic for a given config.

    ``cache_turns`` questions, each followed by a pasted setup of 40 to 120 words: long
    enough that the history's token budget, not only its message count, trims the
    conversation several times.
    """
    words = random.Random(config.seed + 3)
    return [
        f"{QUESTIONS[turn % len(QUESTIONS)]} My setup: "
        + " ".join(words.choice(_SETUP_WORDS) for _ in range(words.randint(40, 120)))
        for turn in range(config.cache_turns)
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
class CacheRun:
    """What the prompt-cache round measured in one trim mode, from the fake server.

    Tokens are the fake server's (`prompt_tokens`: words and chat-template markers), summary
    calls included: they are prompts the model evaluates too.
    """

    trim: Literal["sliding", "stable"]
    evaluated: int
    """Prompt tokens the server evaluated (the sum of its ``prompt_eval_count``)."""
    sent: int
    """Prompt tokens the requests sent, cached or not."""
    requests: int
    """``/api/chat`` requests: one reply per turn, and the summaries."""
    summaries: int
    """Summaries pinned (``BotCore.summaries_made``)."""
    summary_evaluated: int
    """Of ``evaluated``, the summary calls' (the ``prompt_eval_count`` of the core's
    ``summary`` events: what the server reported for them)."""
    summary_errors: int
    failed: int
    """Replies that explained a failure instead of answering."""
    mean_prompt: float
    """Prompt tokens of a reply's request, on average: the context the model got."""
    mean_history: float
    """Messages of history in a reply's request, on average (the question left out)."""


@dataclass(frozen=True)
class CacheOutcome:
    """The prompt-cache round: one conversation, played in both trim modes."""

    turns: int
    sliding: CacheRun
    stable: CacheRun

    @property
    def ratio(self) -> float:
        """How many times fewer prompt tokens "stable" evaluated than "sliding"."""
        return self.sliding.evaluated / self.stable.evaluated if self.stable.evaluated else 0.0


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
    """Seconds from each message to its complete reply (refused messages left out)."""
    first_words: tuple[float, ...]
    """Seconds from each message to the first piece of its streamed reply (the same)."""
    wall: float
    """Seconds the whole burst took."""
    mid_stream_joins: int
    """Late joiners of the mid-stream round that asked while the reply was streaming."""
    mid_stream_calls: int
    """``/api/chat`` requests the server received from the late joiners' release to the end."""
    limited: int = 0
    """Messages the rate limiter refused (over the whole run)."""
    notices: int = 0
    """Refused messages answered with the "slow down" notice (the others got nothing)."""
    flooder_latencies: tuple[float, ...] = ()
    """Seconds to the complete reply of each of the flooding user's admitted messages."""
    others_latencies: tuple[float, ...] = ()
    """Seconds to the complete reply of each other user of the flood round."""
    flood_order: tuple[bool, ...] = ()
    """Whether each ``/api/chat`` request of the flood round, in arrival order, was the
    flooding user's (``False``: another user's)."""
    metrics_url: str = ""
    """Where the run served ``/metrics``."""
    scrape: str = ""
    """The ``/metrics`` text scraped over HTTP at the end of the run."""
    cache: CacheOutcome | None = None
    """The prompt-cache round, or ``None`` when ``cache_turns`` is 0."""

    @property
    def answered(self) -> int:
        """Messages that got a reply or a failure's explanation: those not refused."""
        return self.messages - self.limited


def traffic_rows(outcome: DemoOutcome) -> list[Row]:
    """Messages, replies, and the LLM calls they cost, counted by the server and by the core."""
    executions = outcome.core.dedup.stats.executions
    answered = outcome.answered
    saved = answered - outcome.llm_calls
    share = saved / answered if answered else 0.0
    config = outcome.config
    agree = "they agree" if executions == outcome.llm_calls else "THEY DISAGREE"
    sent = f"{config.channels} channels x {config.rounds} rounds, {config.tracks} conversations"
    if config.late_joiners:
        sent += f", + {config.first_wave + config.late_joiners} mid-stream"
    if config.flood:
        sent += f", + {config.flood + config.flood_users} in the flood"
    return [
        Row("messages sent", f"{outcome.messages}", sent),
        Row(
            "replies ok / failed",
            f"{answered - outcome.failed} / {outcome.failed}",
            f"+ {outcome.limited} refused by the rate limit" if outcome.limited else "",
        ),
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
            f"{config.reply_tokens} x {config.token_delay * 1e3:.0f} ms, "
            f"{config.llm_slots} slots",
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


def flood_rows(outcome: DemoOutcome) -> list[Row]:
    """The flood round: messages limited, and who got the model's slots while it queued."""
    config = outcome.config
    if not config.flood:
        return []
    order = outcome.flood_order
    others_done = max((i for i, flooder in enumerate(order) if not flooder), default=-1) + 1
    ahead = sum(order[:others_done])
    queued = len(outcome.flooder_latencies) - min(config.llm_slots, len(outcome.flooder_latencies))
    others, flooder = outcome.others_latencies, outcome.flooder_latencies
    rate = f"{config.rate_limit:g}/min" if config.rate_limit else "off"
    return [
        Row(
            "flood: messages / limited",
            f"{config.flood} / {config.flood - len(flooder)}",
            f"one user at once; RateLimiter {rate}: {outcome.notices} 'slow down' reply, "
            f"{outcome.limited - outcome.notices} ignored",
        ),
        Row(
            "flood: flooder's calls ahead of the others",
            f"{ahead} of {len(flooder)}",
            f"{config.flood_users} users asked behind {queued} queued; "
            f"FairLimiter({config.llm_slots}) serves them round-robin",
        ),
        Row(
            "flood: other users' reply p50 / p99",
            f"{percentile(others, 0.5) * 1e3:.0f} / {percentile(others, 0.99) * 1e3:.0f} ms",
            f"{config.flood_users} users, {config.flood_questions} questions: "
            "a shared call takes one slot",
        ),
        Row(
            "flood: flooder's reply p50 / p99",
            f"{percentile(flooder, 0.5) * 1e3:.0f} / {percentile(flooder, 0.99) * 1e3:.0f} ms",
            f"its {len(flooder)} admitted messages, one after another",
        ),
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


def cache_rows(outcome: DemoOutcome) -> list[Row]:
    """The prompt-cache round: prompt tokens evaluated and sent, sliding against stable."""
    cache = outcome.cache
    if cache is None:
        return []
    sliding, stable = cache.sliding, cache.stable
    problems = [
        f"{run.failed} {run.trim} replies failed" for run in (sliding, stable) if run.failed
    ] + [
        f"{run.summary_errors} {run.trim} summaries failed"
        for run in (sliding, stable)
        if run.summary_errors
    ]
    return [
        Row(
            "prompt tokens evaluated, sliding / stable",
            f"{sliding.evaluated} / {stable.evaluated}",
            f"{cache.ratio:.1f}x fewer with stable: {cache.turns} turns on one channel, "
            "the fake Ollama's model of its prompt cache",
        ),
        Row(
            "prompt tokens sent, sliding / stable",
            f"{sliding.sent} / {stable.sent}",
            f"evaluated {sliding.evaluated / max(sliding.sent, 1):.0%} / "
            f"{stable.evaluated / max(stable.sent, 1):.0%} of them; summary calls included",
        ),
        Row(
            "summaries made, sliding / stable",
            f"{sliding.summaries} / {stable.summaries}",
            f"one per trim, in the background; their calls evaluated {sliding.summary_evaluated}"
            f" / {stable.summary_evaluated} of the tokens above"
            + (f"; {', '.join(problems)}" if problems else ""),
        ),
        Row(
            "mean context kept, sliding / stable",
            f"{sliding.mean_history:.1f} / {stable.mean_history:.1f}",
            f"messages of history per reply ({sliding.mean_prompt:.0f} / "
            f"{stable.mean_prompt:.0f} prompt tokens)",
        ),
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
    flood_rows,
    latency_rows,
    history_rows,
    metrics_rows,
    cache_rows,
)
"""The table's sections, in order: the burst's, then the prompt-cache round's."""


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


_SAMPLED = (
    "mybot_dedup_executions_total",
    "mybot_dedup_shared_total",
    "mybot_rate_limiter_limited_total",
    "mybot_fair_limiter_admitted_total",
    "mybot_history_evictions_total",
    "mybot_writer_dropped_total",
    'mybot_latency_seconds{name="latency",quantile="0.99",timer="reply"}',
    'mybot_latency_seconds{name="latency",quantile="0.5",timer="llm.first_token"}',
    'mybot_latency_seconds_count{name="latency",timer="llm.token"}',
)


def scrape_sample(scrape: str) -> list[str]:
    """A few telling lines of a ``/metrics`` scrape: calls made and saved, users limited..."""
    return [line for line in scrape.splitlines() if line.startswith(_SAMPLED)]


def report(outcome: DemoOutcome) -> str:
    """The results table, the rows of every section in order, then a sample of the scrape."""
    table = format_table(row for section in SECTIONS for row in section(outcome))
    sample = scrape_sample(outcome.scrape)
    if not sample:
        return table
    lines = "\n".join(f"    {line}" for line in sample)
    return f"{table}\n\nFrom {outcome.metrics_url} (scraped at the end of the run):\n{lines}"


async def run_demo(
    config: DemoConfig,
    metrics_path: str | os.PathLike[str],
    *,
    progress: TextIO | None = sys.stderr,
    metrics_port: int = 0,
) -> DemoOutcome:
    """Run the burst against a fresh fake Ollama and measure it.

    Args:
        config: the burst.
        metrics_path: the file the core appends its metric events to.
        progress: where the progress bar and the ``/metrics`` address go, ``None`` for none.
        metrics_port: the port ``/metrics`` is served on, on 127.0.0.1 (0: a free one).

    Returns:
        The measurements, with the core, closed (its metrics written), for its stats.
    """
    with FakeOllama(
        time_to_first_token=config.time_to_first_token,
        token_delay=config.token_delay,
        reply_tokens=config.reply_tokens,
    ) as server:
        limiter = RateLimiter(config.rate_limit, 60.0) if config.rate_limit else None
        core = BotCore(
            OllamaChat(host=server.url, model="llama3.2", timeout=30.0),
            metrics_path=metrics_path,
            max_channels=config.max_channels,
            rate_limiter=limiter,
            llm_slots=config.llm_slots,
        )
        latencies: list[float] = []
        first_words: list[float] = []
        flooder: list[float] = []
        others: list[float] = []
        notices = sent = 0
        bar = ProgressBar(config.messages, stream=progress) if progress else None
        streaming = anyio.Event()  # the mid-stream round's reply has begun
        streamed = anyio.Event()  # ... and has ended
        calls_at_release = 0
        mid_stream_joins = 0

        async def one(message: Message) -> None:
            nonlocal calls_at_release, mid_stream_joins, notices, sent
            mid_stream = message.text == MID_STREAM_QUESTION
            if message.late and mid_stream:
                await streaming.wait()
            await anyio.sleep(message.delay)
            if message.late and mid_stream and not streamed.is_set():
                mid_stream_joins += 1
            started = time.perf_counter()
            first: float | None = None
            pieces: list[str] = []
            reply = core.stream(message.channel_id, message.author, message.text)
            async with aclosing(reply):
                async for piece in reply:
                    if first is None:
                        first = time.perf_counter() - started
                        if mid_stream and not streaming.is_set():
                            calls_at_release = server.count("/api/chat")
                            streaming.set()
                    pieces.append(piece)
            elapsed = time.perf_counter() - started
            sent += 1
            if not pieces or pieces[0].startswith(_SLOW_DOWN):  # refused by the rate limit
                notices += bool(pieces)
            else:
                latencies.append(elapsed)
                if first is not None:
                    first_words.append(first)
                if message.text.startswith(FLOOD_PREFIX):
                    flooder.append(elapsed)
                elif message.text in AFTER_FLOOD_QUESTIONS:
                    others.append(elapsed)
            if mid_stream:
                streamed.set()
            if bar is not None:
                bar.advance()

        async def play_flood(messages: list[Message]) -> tuple[bool, ...]:
            """The flood round, staged: the server holds its requests until all have queued."""
            flood = [m for m in messages if not m.late]
            late = [m for m in messages if m.late]
            before = core.rate_limiter.stats if core.rate_limiter else None
            calls_before = core.dedup.stats.calls
            requests_before = len(server.conversations())

            def admitted() -> int:
                if before is None or core.rate_limiter is None:
                    return len(flood)
                now = core.rate_limiter.stats
                checked = now.admitted + now.limited - before.admitted - before.limited
                return now.admitted - before.admitted if checked == len(flood) else -1

            def calls(extra: int) -> int:
                slots = core.slots.stats
                return slots.in_use + slots.waiting - extra

            server.pause()
            try:
                async with anyio.create_task_group() as group:
                    for message in flood:
                        group.start_soon(one, message)
                    await _until(lambda: admitted() >= 0 and calls(0) == admitted())
                    flood_calls = admitted()
                    for message in late:
                        group.start_soon(one, message)
                    questions = len({m.text for m in late})
                    await _until(
                        lambda: (
                            core.dedup.stats.calls == calls_before + flood_calls + len(late)
                            and calls(questions) == flood_calls
                        )
                    )
                    server.resume()
            finally:
                server.resume()
            asked = server.conversations()[requests_before:]
            return tuple(str(c[-1]["content"]).startswith(FLOOD_PREFIX) for c in asked)

        await core.start()
        started = time.perf_counter()
        mid_stream_calls = 0
        flood_order: tuple[bool, ...] = ()
        metrics = MetricsServer(core, metrics_port).start()
        metrics_url = metrics.url
        if progress is not None:
            progress.write(f"  serving {metrics_url} while it runs\n")
            progress.flush()
        try:
            for messages in [*plan(config), mid_stream_round(config)]:
                async with anyio.create_task_group() as group:
                    for message in messages:
                        group.start_soon(one, message)
            if config.late_joiners:
                mid_stream_calls = server.count("/api/chat") - calls_at_release
            flood = flood_round(config)
            if flood:
                flood_order = await play_flood(flood)
        finally:
            wall = time.perf_counter() - started
            if bar is not None:
                bar.close()
            try:
                await core.aclose()
                async with httpx.AsyncClient() as client:
                    scrape = (await client.get(metrics_url)).raise_for_status().text
            finally:
                metrics.close()
        if config.cache_turns and progress is not None:
            progress.write(
                f"  prompt-cache round: {config.cache_turns} turns on one channel, "
                "trim='sliding', then trim='stable'\n"
            )
            progress.flush()
        cache = await cache_round(config)
        return DemoOutcome(
            config=config,
            core=core,
            messages=sent,
            failed=sum(core.errors.values()),  # counted once per message
            llm_calls=server.count("/api/chat"),
            latencies=tuple(latencies),
            first_words=tuple(first_words),
            wall=wall,
            mid_stream_joins=mid_stream_joins,
            mid_stream_calls=mid_stream_calls,
            limited=core.rate_limiter.stats.limited if core.rate_limiter else 0,
            notices=notices,
            flooder_latencies=tuple(flooder),
            others_latencies=tuple(others),
            flood_order=flood_order,
            metrics_url=metrics_url,
            scrape=scrape,
            cache=cache,
        )


async def cache_round(config: DemoConfig) -> CacheOutcome | None:
    """Play `cache_conversation` in each trim mode and measure it; ``None`` if no turns.

    Each mode gets a fresh fake Ollama (its prompt cache empty, replies drawn from the
    whole conversation, so that each summary is a new text, as a model's would be) and a
    fresh `BotCore` with the bot's defaults but ``trim`` and no rate limit (one user sends
    every message). The server answers at once: the round counts tokens, not time. Each
    turn's summary, made in the background while the reply streams, is pinned before the
    next message, as when the user takes longer to type than the model to summarize; so
    the counts depend on no timing. The cores' metric events go to a temporary directory,
    removed at the end.
    """
    if not config.cache_turns:
        return None
    texts = cache_conversation(config)
    folder = Path(
        await anyio.to_thread.run_sync(functools.partial(tempfile.mkdtemp, prefix="botperf-"))
    )
    try:
        sliding = await _cache_run("sliding", texts, config, folder)
        stable = await _cache_run("stable", texts, config, folder)
    finally:
        await anyio.to_thread.run_sync(shutil.rmtree, folder)
    return CacheOutcome(turns=len(texts), sliding=sliding, stable=stable)


async def _cache_run(
    trim: Literal["sliding", "stable"], texts: Sequence[str], config: DemoConfig, folder: Path
) -> CacheRun:
    """One trim mode of the prompt-cache round, against a fake Ollama of its own."""
    metrics_path = folder / f"cache-{trim}.jsonl"
    with FakeOllama(
        time_to_first_token=0.0,
        token_delay=0.0,
        reply_tokens=config.reply_tokens,
        reply_depends_on="conversation",
    ) as server:
        async with BotCore(
            OllamaChat(host=server.url, model="llama3.2", timeout=30.0),
            metrics_path=metrics_path,
            llm_slots=config.llm_slots,
            trim=trim,
        ) as core:
            for text in texts:
                await core.handle(CACHE_CHANNEL, "cache-user", text)
                await _until(lambda: core.summaries_running == 0)
        asked = server.conversations()
        evaluated = sum(server.prompt_evals())
    events = await anyio.to_thread.run_sync(lambda: list(read_metrics(metrics_path)))
    replies = [messages for messages in asked if messages[0]["content"] != SUMMARY_PROMPT]
    return CacheRun(
        trim=trim,
        evaluated=evaluated,
        sent=sum(len(prompt_tokens(messages)) for messages in asked),
        requests=len(asked),
        summaries=core.summaries_made,
        summary_evaluated=sum(
            event["prompt_eval_count"] or 0 for event in events if event["event"] == "summary"
        ),
        summary_errors=core.summary_errors,
        failed=sum(core.errors.values()),
        mean_prompt=statistics.fmean(len(prompt_tokens(m)) for m in replies) if replies else 0.0,
        mean_history=statistics.fmean(
            sum(message["role"] != "system" for message in messages[:-1]) for messages in replies
        )
        if replies
        else 0.0,
    )


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds: it reads counters that signal nothing, hence polling."""
    with anyio.fail_after(30):  # a safety net: it holds within milliseconds
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)
