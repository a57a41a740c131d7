"""The example core's admission control: a per-user rate limit and fair Ollama slots.

Every test talks real HTTP to ``FakeOllama`` on 127.0.0.1. The rate limiter runs on a
clock the test moves; calls that must queue are held by the paused server until the core
has seen them all, so no test depends on timing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from concurrency import eventually

from botperf import RateLimiter, read_metrics
from examples.chatcore.core import EMPTY_REPLY, BotCore, slow_down_notice
from examples.chatcore.fake_ollama import FakeOllama, Fault, canned_reply, tokenize
from examples.chatcore.llm import OllamaChat
from examples.chatcore.protocol import Reply

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def metrics_path(tmp_path: Path) -> Path:
    return tmp_path / "metrics.jsonl"


@asynccontextmanager
async def running_core(
    server: FakeOllama, metrics_path: Path, **options: Any
) -> AsyncIterator[BotCore]:
    async with BotCore(
        OllamaChat(host=server.url, timeout=30.0), metrics_path=metrics_path, **options
    ) as core:
        yield core


def events(metrics_path: Path, name: str) -> list[dict[str, Any]]:
    return [event for event in read_metrics(metrics_path) if event["event"] == name]


async def streamed(core: BotCore, channel: int, author: str, text: str) -> list[str]:
    async with aclosing(core.stream(channel, author, text)) as pieces:
        return [piece async for piece in pieces]


async def test_a_user_over_the_rate_gets_one_notice_then_nothing(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    clock = Clock()
    limiter = RateLimiter(2, 60.0, clock=clock)  # 2 a minute: one every 30 s
    async with running_core(fake_ollama, metrics_path, rate_limiter=limiter) as core:
        first = await core.handle(1, "ann", "one?")
        second = await core.handle(1, "ann", "two?")
        clock.now += 6.5
        refused = await core.handle(1, "ann", "three?")
        again = await streamed(core, 1, "ann", "four?")
        history = core.history.get(1)
    assert first == Reply(canned_reply("one?"))
    assert second == Reply(canned_reply("two?"))
    assert refused == Reply("Slow down, try again in 24 s.", limited=True)
    assert refused.text == slow_down_notice(limiter.retry_after("ann"))
    assert again == []  # told already: nothing to send
    assert fake_ollama.count("/api/chat") == 2
    assert [m.content for m in history] == [
        "one?",
        canned_reply("one?"),
        "two?",
        canned_reply("two?"),
    ]
    assert limiter.stats.admitted == 2
    assert limiter.stats.limited == 2
    limited = events(metrics_path, "message_limited")
    assert [(e["notified"], e["retry_after_s"]) for e in limited] == [(True, 23.5), (False, 23.5)]
    assert len(events(metrics_path, "message_in")) == 4
    assert len(events(metrics_path, "reply_out")) == len(events(metrics_path, "llm_call")) == 2


async def test_a_user_admitted_again_is_told_again_when_over(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    clock = Clock()
    limiter = RateLimiter(1, 10.0, clock=clock)
    async with running_core(fake_ollama, metrics_path, rate_limiter=limiter) as core:
        replies = [await core.handle(1, "ann", "a?"), await core.handle(1, "ann", "b?")]
        replies.append(await core.handle(1, "ann", "c?"))
        clock.now += 10.0
        replies.append(await core.handle(1, "ann", "d?"))
        replies.append(await core.handle(1, "ann", "e?"))
    assert [(r.limited, r.text) for r in replies] == [
        (False, canned_reply("a?")),
        (True, "Slow down, try again in 10 s."),
        (True, ""),
        (False, canned_reply("d?")),
        (True, "Slow down, try again in 10 s."),
    ]


async def test_users_are_limited_apart(fake_ollama: FakeOllama, metrics_path: Path) -> None:
    limiter = RateLimiter(1, 60.0, clock=Clock())
    async with running_core(fake_ollama, metrics_path, rate_limiter=limiter) as core:
        ann = [await core.handle(1, "ann", "hi?"), await core.handle(1, "ann", "hi?")]
        bob = await core.handle(1, "bob", "hi?")
    assert [r.limited for r in ann] == [False, True]
    assert bob == Reply(canned_reply("hi?"))


async def test_without_a_rate_limiter_every_message_is_answered(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    # Without summaries: their calls (the conversation is trimmed) would add to the count.
    async with running_core(fake_ollama, metrics_path, summaries=False) as core:
        replies = [await core.handle(1, "ann", f"question {n}?") for n in range(12)]
    assert core.rate_limiter is None
    assert not any(reply.limited for reply in replies)
    assert fake_ollama.count("/api/chat") == 12


async def test_a_shared_answer_takes_one_slot(fake_ollama: FakeOllama, metrics_path: Path) -> None:
    async with running_core(fake_ollama, metrics_path, llm_slots=1) as core:
        replies: dict[str, Reply] = {}

        async def ask(author: str, text: str) -> None:
            replies[author] = await core.handle(hash(author) % 5, author, text)

        fake_ollama.pause()
        try:
            async with anyio.create_task_group() as group:
                for n in range(5):
                    group.start_soon(ask, f"user{n}", "What is the GIL?")
                group.start_soon(ask, "zoe", "What is a slot?")
                await eventually(lambda: core.dedup.stats.calls == 6)
                await eventually(lambda: core.slots.stats.waiting == 1)
                # Five askers, one call, one slot; the other question waits for it.
                assert core.slots.stats.in_use == 1
                fake_ollama.resume()
        finally:
            fake_ollama.resume()
    assert fake_ollama.count("/api/chat") == 2
    assert core.slots.stats.admitted == 2
    assert {reply.text for name, reply in replies.items() if name != "zoe"} == {
        canned_reply("What is the GIL?")
    }


async def test_slots_go_round_robin_between_users(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path, llm_slots=1) as core:

        async def queued(calls: int) -> None:
            await eventually(lambda: core.slots.stats.in_use + core.slots.stats.waiting == calls)

        fake_ollama.pause()
        try:
            async with anyio.create_task_group() as group:
                for n in range(4):  # ann's four questions, in order: one runs, three wait
                    group.start_soon(core.handle, 1, "ann", f"ann's question {n}?")
                    await queued(n + 1)
                group.start_soon(core.handle, 2, "bob", "bob's question?")
                await eventually(lambda: core.slots.stats.waiting == 4)
                fake_ollama.resume()
        finally:
            fake_ollama.resume()
    asked = [str(conversation[-1]["content"]) for conversation in fake_ollama.conversations()]
    # Bob gets one of the next two slots released, not the one after ann's whole queue.
    assert asked.index("bob's question?") <= 2
    ann = [text for text in asked if text.startswith("ann")]
    assert ann == [f"ann's question {n}?" for n in range(4)]  # in the order she asked


async def test_each_call_times_its_slot_first_token_and_tokens(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        await core.handle(1, "ann", "What is a token?")
        await core.handle(2, "bob", "What is a slot?")
    summary = core.latency.summary()
    assert summary["llm.slot"].count == summary["llm.first_token"].count == 2
    pieces = len(tokenize(canned_reply("What is a token?"))) + len(
        tokenize(canned_reply("What is a slot?"))
    )
    assert summary["llm.token"].count == pieces - 2  # every piece after the first
    assert summary["llm.first_token"].total < summary["ollama.chat"].total


async def test_an_empty_reply_streams_the_placeholder(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    fake_ollama.fault = Fault.EMPTY_REPLY
    async with running_core(fake_ollama, metrics_path) as core:
        pieces = await streamed(core, 1, "ann", "Say nothing?")
        reply = await core.handle(2, "bob", "Say nothing?")
        history = core.history.get(1)
    assert pieces == [EMPTY_REPLY]
    assert reply == Reply(EMPTY_REPLY)
    assert [m.content for m in history] == ["Say nothing?", ""]  # what the model said
