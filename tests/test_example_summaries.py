"""The example bot's summaries of trimmed messages, on a fake Ollama over real HTTP.

The core trims "stable" and summarizes what it trims in background tasks it owns. Tests
that need a summary to stay in flight hold the summary calls in the client (`HeldChat`),
the replies going on; the others wait until the core has no summary running. No test
depends on timing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from botperf import Message, read_metrics
from examples.chatcore.core import (
    DEFAULT_SYSTEM_PROMPT,
    SUMMARY_PREFIX,
    SUMMARY_PROMPT,
    BotCore,
    summary_request,
)
from examples.chatcore.fake_ollama import FakeOllama, Fault, canned_reply
from examples.chatcore.llm import ChatResult, OllamaChat

pytestmark = pytest.mark.anyio


class HeldChat:
    """An `OllamaChat` whose summary calls (``chat()``) wait for `release`; replies stream."""

    def __init__(self, llm: OllamaChat) -> None:
        self._llm = llm
        self.release = anyio.Event()
        self.waiting: list[Sequence[Mapping[str, str]]] = []
        self.cancelled = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    async def chat(self, messages: Sequence[Mapping[str, str]]) -> ChatResult:
        self.waiting.append(messages)
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.waiting.remove(messages)
        return await self._llm.chat(messages)


@pytest.fixture
def metrics_path(tmp_path: Path) -> Path:
    return tmp_path / "metrics.jsonl"


@asynccontextmanager
async def running_core(
    server: FakeOllama, metrics_path: Path, *, held: HeldChat | None = None, **options: Any
) -> AsyncIterator[BotCore]:
    llm = OllamaChat(host=server.url, timeout=30.0)
    if held is not None:
        held._llm = llm
    async with BotCore(
        llm if held is None else held,  # type: ignore[arg-type]
        metrics_path=metrics_path,
        max_messages=4,
        **options,
    ) as core:
        yield core


def held_chat() -> HeldChat:
    return HeldChat(None)  # type: ignore[arg-type]  # running_core plugs the client in


async def wait_until(condition: Callable[[], bool]) -> None:
    # The conditions read counters that signal nothing, hence polling; the deadline is a
    # safety net: they hold within milliseconds.
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


def summary_calls(server: FakeOllama) -> list[list[dict[str, Any]]]:
    return [c for c in server.conversations() if c[0]["content"] == SUMMARY_PROMPT]


def reply_calls(server: FakeOllama) -> list[list[dict[str, Any]]]:
    return [c for c in server.conversations() if c[0]["content"] != SUMMARY_PROMPT]


def summarized(server: FakeOllama) -> list[str]:
    """The transcript lines every summary request sent, in order (previous summaries left out)."""
    lines = []
    for call in summary_calls(server):
        lines += [line for line in call[1]["content"].splitlines() if ": " in line]
    return [line for line in lines if not line.startswith("Summary so far: ")]


def summary_of(words: int) -> str:
    """The summary the fake server writes (it answers the request's last question)."""
    return SUMMARY_PREFIX + canned_reply(
        f"Summarize the conversation above in at most {words} words."
    )


async def test_a_trimmed_conversation_gets_a_summary_pinned_after_the_system_prompt(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        replies = [(await core.handle(1, "ann", text)).text for text in ("one", "two", "three")]
        await core.handle(1, "ann", "four")  # its prompt trims "two" and its reply
        await wait_until(lambda: core.summaries_running == 0)
        await core.handle(1, "ann", "five")
    assert summarized(fake_ollama) == [
        "user: one",
        f"assistant: {replies[0]}",
        "user: two",
        f"assistant: {replies[1]}",
    ]
    prompt = reply_calls(fake_ollama)[-1]
    assert prompt[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert prompt[1] == {"role": "system", "content": summary_of(160)}  # 2000 tokens / 10
    assert prompt[2]["content"] == "three"
    assert core.summaries_made >= 1
    assert core.summary_errors == 0
    recorded = [e for e in read_metrics(metrics_path) if e["event"] == "summary"]
    assert sum(e["messages"] for e in recorded) == 4
    assert all(e["error"] is False and e["prompt_eval_count"] > 0 for e in recorded)


async def test_a_summary_builds_on_the_previous_one(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        for text in ("one", "two", "three"):
            await core.handle(1, "ann", text)
        await wait_until(lambda: core.summaries_running == 0)
        first = core.history.get_summary(1)
        await core.handle(1, "ann", "four")  # trims again
        await wait_until(lambda: core.summaries_running == 0)
    assert first == summary_of(160)
    last = summary_calls(fake_ollama)[-1][1]["content"]
    assert last.startswith(f"Summary so far: {first.removeprefix(SUMMARY_PREFIX)}\n")


async def test_one_summary_in_flight_per_channel(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    held = held_chat()
    # Three slots: two summaries at once, one slot left to the replies.
    english = ("one", "two", "three", "four", "five", "six")
    spanish = ("uno", "dos", "tres", "cuatro", "cinco", "seis")  # not one request twice
    async with running_core(fake_ollama, metrics_path, held=held, llm_slots=3) as core:
        for first, second in zip(english, spanish, strict=True):  # trims three times
            await core.handle(1, "ann", first)
            await core.handle(2, "bob", second)
        await wait_until(lambda: len(held.waiting) == 2)
        # Channel 1 trimmed while its summary waited: still one call per channel.
        assert core.summaries_running == 2
        assert sorted(w[1]["content"].splitlines()[0] for w in held.waiting) == [
            "user: one",
            "user: uno",
        ]
        held.release.set()
        await wait_until(lambda: core.summaries_running == 0)
    assert len(summary_calls(fake_ollama)) == 4  # per channel: the first trim, then the rest
    for channel in (1, 2):
        assert core.history.get_summary(channel) == summary_of(160)
    lines = summarized(fake_ollama)
    users = [line for line in lines if line.startswith("user")]
    assert sorted(users) == sorted(f"user: {text}" for text in english[:4] + spanish[:4])


async def test_channels_with_equal_summary_requests_share_one_call(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    held = held_chat()
    async with running_core(fake_ollama, metrics_path, held=held, llm_slots=3) as core:
        for text in ("one", "two", "three"):  # the third trims both channels alike
            await core.handle(1, "ann", text)
            await core.handle(2, "bob", text)
        await wait_until(lambda: core.summary_dedup.stats.calls == 2)
        assert core.summaries_running == 2
        assert len(held.waiting) == 1
        assert core.summary_dedup.stats.shared == 1  # channel 2 joined channel 1's call
        held.release.set()
        await wait_until(lambda: core.summaries_running == 0)
    assert len(summary_calls(fake_ollama)) == 1
    for channel in (1, 2):
        assert core.history.get_summary(channel) == summary_of(160)
    assert core.summaries_made == 2


async def test_a_failed_summary_leaves_the_old_one_and_is_logged_and_counted(
    fake_ollama: FakeOllama, metrics_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        for text in ("one", "two", "three"):
            await core.handle(1, "ann", text)
        await wait_until(lambda: core.summaries_running == 0)
        pinned = core.history.get_summary(1)
        fake_ollama.fault = Fault.SERVER_ERROR
        with caplog.at_level(logging.WARNING, logger="examples.chatcore.core"):
            await core.handle(1, "ann", "four")  # its prompt trims; the summary fails
            await wait_until(lambda: core.summaries_running == 0)
        assert core.summary_errors == 1
        assert core.history.get_summary(1) == pinned
        fake_ollama.fault = None
        await core.handle(1, "ann", "five")
        for text in ("six", "seven"):  # the next trim
            await core.handle(1, "ann", text)
        await wait_until(lambda: core.summaries_running == 0)
    assert pinned == summary_of(160)
    assert "summary failed, the previous one stays" in caplog.text
    assert reply_calls(fake_ollama)[-3][1]["content"] == pinned  # "five" still had it
    # The failed call's messages ("two" and its reply) went with the next trim's.
    with_two = [c for c in summary_calls(fake_ollama) if "user: two" in c[1]["content"]]
    assert len(with_two) == 2  # the failed call, then the retry
    retried = with_two[-1][1]["content"].splitlines()
    assert retried[0] == f"Summary so far: {pinned.removeprefix(SUMMARY_PREFIX)}"
    assert "user: two" in retried
    failed = [e for e in read_metrics(metrics_path) if e["event"] == "summary" and e["error"]]
    assert [(e["messages"], e["error_kind"]) for e in failed] == [(2, "server_error")]


async def test_aclose_cancels_the_summaries_still_pending(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    held = held_chat()
    with anyio.fail_after(10):  # a safety net: aclose() returns at once
        async with running_core(fake_ollama, metrics_path, held=held) as core:
            for text in ("one", "two", "three"):
                await core.handle(1, "ann", text)
            await wait_until(lambda: len(held.waiting) == 1)
    assert held.cancelled == 1
    assert held.waiting == []
    assert (core.summaries_made, core.summaries_running) == (0, 0)
    assert core.history.get_summary(1) is None


async def test_a_reset_drops_the_summary_on_its_way(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    held = held_chat()
    async with running_core(fake_ollama, metrics_path, held=held) as core:
        for text in ("one", "two", "three"):
            await core.handle(1, "ann", text)
        await wait_until(lambda: len(held.waiting) == 1)
        await core.reset(1)
        await core.handle(1, "ann", "again")
        held.release.set()
        await wait_until(lambda: core.summaries_running == 0)
        assert core.history.get_summary(1) is None  # the old conversation's, not pinned
    assert reply_calls(fake_ollama)[-1][1:] == [{"role": "user", "content": "again"}]


async def test_an_eviction_drops_the_summary_on_its_way(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    held = held_chat()
    async with running_core(fake_ollama, metrics_path, held=held, max_channels=1) as core:
        for text in ("one", "two", "three"):
            await core.handle(1, "ann", text)
        await wait_until(lambda: len(held.waiting) == 1)
        await core.handle(2, "bob", "hello")  # evicts channel 1
        await core.handle(1, "ann", "again")  # evicts channel 2: channel 1 starts anew
        held.release.set()
        await wait_until(lambda: core.summaries_running == 0)
        assert core.history.get_summary(1) is None  # the evicted conversation's, not pinned
        assert core.summaries_made == 0
    assert reply_calls(fake_ollama)[-1][1:] == [{"role": "user", "content": "again"}]


async def test_summaries_leave_a_slot_to_the_replies(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    held = held_chat()
    async with running_core(fake_ollama, metrics_path, held=held, llm_slots=2) as core:
        for channel in (1, 2, 3):
            for text in ("one", "two", "three"):
                await core.handle(channel, "ann", text)
        # Three channels wait for a summary, one is asked for: the other slot answers.
        assert (core.summaries_running, len(held.waiting)) == (3, 1)
        reply = await core.handle(4, "bob", "still there?")
        held.release.set()
        await wait_until(lambda: core.summaries_running == 0)
    assert reply.text == canned_reply("still there?")
    assert core.summaries_made == 3


async def test_sliding_and_summaries_off_are_options(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path, trim="sliding", summaries=False) as core:
        for text in ("one", "two", "three", "four"):
            await core.handle(1, "ann", text)
    assert summary_calls(fake_ollama) == []
    users = [[m["content"] for m in c if m["role"] == "user"] for c in reply_calls(fake_ollama)]
    assert users[-1] == ["two", "three", "four"]  # the newest that fit, every turn


async def test_a_core_never_started_makes_no_summary(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    core = BotCore(OllamaChat(host=fake_ollama.url), metrics_path=metrics_path, max_messages=4)
    try:
        for text in ("one", "two", "three", "four"):
            await core.handle(1, "ann", text)
    finally:
        await core.aclose()
    assert summary_calls(fake_ollama) == []
    assert core.history.stats.trim_errors == 0


def test_the_summary_request_puts_the_transcript_first_and_the_question_last() -> None:
    messages = [Message("user", "How do intents work?"), Message("assistant", "Like this.")]
    request = summary_request(f"{SUMMARY_PREFIX}The user set up a bot.", messages, words=50)
    assert request == [
        {"role": "system", "content": SUMMARY_PROMPT},
        {
            "role": "user",
            "content": "Summary so far: The user set up a bot.\n\n"
            "user: How do intents work?\nassistant: Like this.",
        },
        {"role": "user", "content": "Summarize the conversation above in at most 50 words."},
    ]
    assert summary_request(None, messages, words=50)[1]["content"].startswith("user: ")
