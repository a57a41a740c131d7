"""The example bot's core (HistoryStore, Deduplicator, timed, BatchMetricsWriter) on a fake Ollama.

Every test talks real HTTP to ``FakeOllama`` on 127.0.0.1; LLM calls are counted by the
server itself. Tests that need callers to arrive together pause the server, wait until the
core has seen every call, then let it answer: no test depends on timing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from botperf import read_metrics
from examples.chatcore.core import DEFAULT_SYSTEM_PROMPT, BotCore, normalize
from examples.chatcore.fake_ollama import FakeOllama, Fault, canned_reply, tokenize
from examples.chatcore.llm import LLMErrorKind, OllamaChat
from examples.chatcore.protocol import Reply

pytestmark = [
    pytest.mark.anyio,
    # On trio, a stream ended by an {"error": ...} line leaves the ollama client's
    # generators over httpx and httpcore to the garbage collector, which trio reports (the
    # HTTP response itself is closed; examples/chatcore/llm.py explains).
    pytest.mark.filterwarnings(
        r"ignore:Async generator 'http(x|core)\..*' was garbage collected:ResourceWarning"
    ),
]


def system() -> dict[str, str]:
    return {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


@pytest.fixture
def metrics_path(tmp_path: Path) -> Path:
    return tmp_path / "metrics.jsonl"


@asynccontextmanager
async def running_core(
    server: FakeOllama,
    metrics_path: Path,
    *,
    seconds: float = 30.0,
    model: str = "llama3.2",
    max_reply_chunks: int = 10_000,
    **options: Any,
) -> AsyncIterator[BotCore]:
    async with BotCore(
        OllamaChat(host=server.url, model=model, timeout=seconds),
        metrics_path=metrics_path,
        max_messages=4,
        max_reply_chunks=max_reply_chunks,
        **options,
    ) as core:
        yield core


def events(metrics_path: Path, name: str) -> list[dict[str, Any]]:
    return [event for event in read_metrics(metrics_path) if event["event"] == name]


async def wait_until(condition: Callable[[], bool]) -> None:
    # The conditions read counters (the server thread's, the core's) that signal nothing,
    # hence polling; the deadline is a safety net: they hold within milliseconds.
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def ask_together(
    core: BotCore, server: FakeOllama, questions: Sequence[tuple[int, str]]
) -> list[Reply]:
    """Send every ``(channel, text)`` at once; answer only once the core has seen them all."""
    replies: list[Reply] = [Reply("")] * len(questions)
    calls_before = core.dedup.stats.calls

    async def ask(index: int, channel: int, text: str) -> None:
        replies[index] = await core.handle(channel, f"user{index}", text)

    server.pause()
    try:
        async with anyio.create_task_group() as group:
            for index, (channel, text) in enumerate(questions):
                group.start_soon(ask, index, channel, text)
            await wait_until(lambda: core.dedup.stats.calls == calls_before + len(questions))
            server.resume()
    finally:
        server.resume()
    return replies


async def test_answers_with_the_models_reply(fake_ollama: FakeOllama, metrics_path: Path) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        reply = await core.handle(1, "ann", "What is a thread?")
    assert reply == Reply(canned_reply("What is a thread?"))


async def test_identical_concurrent_questions_cost_one_llm_call(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        spellings = ["What is a GIL?", "what is a gil?", "  What   is a GIL? ", "WHAT IS A GIL?"]
        replies = await ask_together(core, fake_ollama, list(enumerate(spellings)))
    assert fake_ollama.count("/api/chat") == 1
    stats = core.dedup.stats
    assert (stats.calls, stats.executions, stats.shared) == (4, 1, 3)
    assert {reply.text for reply in replies} == {
        canned_reply(fake_ollama.conversations()[0][-1]["content"])
    }


async def test_each_channel_keeps_its_own_users_words_with_the_shared_reply(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        replies = await ask_together(core, fake_ollama, [(1, "Hi there"), (2, "hi  THERE")])
        histories = [core.history.get(1), core.history.get(2)]
    assert fake_ollama.count("/api/chat") == 1
    assert [[(m.role, m.content) for m in history] for history in histories] == [
        [("user", "Hi there"), ("assistant", replies[0].text)],
        [("user", "hi  THERE"), ("assistant", replies[0].text)],
    ]


async def test_the_same_question_in_different_conversations_is_not_merged(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        await core.handle(1, "ann", "earlier question")
        await ask_together(core, fake_ollama, [(1, "same question"), (2, "same question")])
    assert fake_ollama.count("/api/chat") == 3
    assert core.dedup.stats.shared == 0


async def test_the_next_turn_sends_the_previous_answer(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        first = await core.handle(1, "ann", "first")
        await core.handle(1, "bob", "second")
    assert fake_ollama.conversations() == [
        [system(), user("first")],
        [system(), user("first"), assistant(first.text), user("second")],
    ]


async def test_sliding_history_keeps_the_newest_messages(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path, trim="sliding", summaries=False) as core:
        for text in ("one", "two", "three", "four"):  # max_messages=4: two exchanges
            await core.handle(1, "ann", text)
    sent = fake_ollama.conversations()[-1]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["two", "three", "four"]


async def test_stable_history_trims_to_half_and_grows_again(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path, summaries=False) as core:
        for text in ("one", "two", "three", "four", "five"):  # max_messages=4
            await core.handle(1, "ann", text)
    users = [
        [m["content"] for m in sent if m["role"] == "user"] for sent in fake_ollama.conversations()
    ]
    # Appending "three" drops "one": the next prompt trims the window to half of
    # max_messages (one exchange), then it grows again, each prompt extending the last.
    assert users == [
        ["one"],
        ["one", "two"],
        ["one", "two", "three"],
        ["three", "four"],
        ["three", "four", "five"],
    ]


async def test_reset_forgets_the_channel_only(fake_ollama: FakeOllama, metrics_path: Path) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        await core.handle(1, "ann", "first")
        await core.handle(2, "ann", "other")
        await core.reset(1)
        await core.handle(1, "ann", "again")
        assert len(core.history.get(2)) == 2
    assert fake_ollama.conversations()[-1] == [system(), user("again")]


class Consumer:
    """One message whose streamed reply is read in a task; ``pieces`` grows as it arrives."""

    def __init__(self, core: BotCore, channel: int, text: str, *, stop_after: int = 0) -> None:
        self.core = core
        self.channel = channel
        self.text = text
        self.stop_after = stop_after
        self.pieces: list[str] = []
        self.done = False

    async def run(self) -> None:
        async with aclosing(self.core.stream(self.channel, f"user{self.channel}", self.text)) as s:
            async for piece in s:
                self.pieces.append(piece)
                if len(self.pieces) == self.stop_after:
                    break  # this user's reader goes away mid-reply
        self.done = True

    async def start(self, group: anyio.abc.TaskGroup, *, pieces: int) -> Consumer:
        """Start reading; return once ``pieces`` pieces arrived (the server paused after them)."""
        group.start_soon(self.run)
        await wait_until(lambda: len(self.pieces) == pieces)
        return self


def reply_tokens(question: str) -> list[str]:
    return tokenize(canned_reply(question))


async def test_stream_yields_the_reply_token_by_token_and_stores_it(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with (
        running_core(fake_ollama, metrics_path) as core,
        aclosing(core.stream(1, "ann", "hello")) as pieces,
    ):
        received = [piece async for piece in pieces]
        history = [(m.role, m.content) for m in core.history.get(1)]
    assert received == reply_tokens("hello")
    assert history == [("user", "hello"), ("assistant", canned_reply("hello"))]


async def test_concurrent_identical_streams_share_one_request_and_every_chunk(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        consumers = [Consumer(core, channel, "What is a GIL?") for channel in (1, 2, 3)]
        fake_ollama.pause()
        try:
            async with anyio.create_task_group() as group:
                for consumer in consumers:
                    group.start_soon(consumer.run)
                await wait_until(lambda: core.dedup.stats.calls == 3)
                fake_ollama.resume()
        finally:
            fake_ollama.resume()
    assert fake_ollama.count("/api/chat") == 1
    assert [c.pieces for c in consumers] == [reply_tokens("What is a GIL?")] * 3
    assert (core.dedup.stats.executions, core.dedup.stats.shared) == (1, 2)


async def test_a_late_joiner_gets_the_whole_reply_without_an_extra_call(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    fake_ollama.pause(after_tokens=3)
    try:
        async with (
            running_core(fake_ollama, metrics_path) as core,
            anyio.create_task_group() as group,
        ):
            first = await Consumer(core, 1, "hi").start(group, pieces=3)
            late = await Consumer(core, 2, "HI ").start(group, pieces=3)  # replayed at once
            assert not first.done  # the reply is held mid-stream
            fake_ollama.resume()
    finally:
        fake_ollama.resume()
    assert first.pieces == late.pieces == reply_tokens("hi")
    assert fake_ollama.count("/api/chat") == 1
    assert (core.dedup.stats.executions, core.dedup.stats.shared) == (1, 1)
    assert core.history.get(2)[-1].content == canned_reply("hi")


async def test_streamed_replies_record_the_call_once_and_each_message(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    fake_ollama.pause(after_tokens=1)
    try:
        async with (
            running_core(fake_ollama, metrics_path) as core,
            anyio.create_task_group() as group,
        ):
            await Consumer(core, 1, "hi").start(group, pieces=1)
            await Consumer(core, 2, "hi").start(group, pieces=1)
            fake_ollama.resume()
    finally:
        fake_ollama.resume()
    made, shared = sorted(events(metrics_path, "llm_call"), key=lambda e: e["deduplicated"])
    assert (made["channel"], made["deduplicated"], shared["channel"], shared["deduplicated"]) == (
        1,
        False,
        2,
        True,
    )
    assert 0 < made["ttft_ms"] <= made["latency_ms"]
    assert made["eval_count"] == len(reply_tokens("hi"))
    assert (shared["ttft_ms"], shared["eval_count"], shared["error"]) == (None, None, False)
    assert len(events(metrics_path, "message_in")) == 2
    replies = events(metrics_path, "reply_out")
    assert sorted((e["channel"], e["chars"], e["error"]) for e in replies) == [
        (1, len(canned_reply("hi")), False),
        (2, len(canned_reply("hi")), False),
    ]
    assert len(events(metrics_path, "ollama.chat")) == 1


async def test_a_consumer_that_stops_early_leaves_the_others_streaming(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    fake_ollama.pause(after_tokens=3)
    try:
        async with (
            running_core(fake_ollama, metrics_path) as core,
            anyio.create_task_group() as group,
        ):
            leaver = await Consumer(core, 1, "hi", stop_after=4).start(group, pieces=3)
            stayer = await Consumer(core, 2, "hi").start(group, pieces=3)
            fake_ollama.resume()
            await wait_until(lambda: leaver.done)
    finally:
        fake_ollama.resume()
    assert leaver.pieces == reply_tokens("hi")[:4]
    assert stayer.pieces == reply_tokens("hi")
    assert (fake_ollama.count("/api/chat"), fake_ollama.hangups()) == (1, 0)
    assert core.history.get(1) == ()
    assert [e["channel"] for e in events(metrics_path, "reply_out")] == [2]
    [made] = [e for e in events(metrics_path, "llm_call") if not e["deduplicated"]]
    assert (made["channel"], made["error"]) == (1, False)  # the call made, read to its end


async def test_when_every_consumer_leaves_the_ollama_request_is_closed(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    fake_ollama.pause(after_tokens=3)
    try:
        async with (
            running_core(fake_ollama, metrics_path) as core,
            anyio.create_task_group() as group,
        ):
            leavers = [Consumer(core, channel, "hi", stop_after=3) for channel in (1, 2)]
            for leaver in leavers:
                group.start_soon(leaver.run)
            await wait_until(lambda: all(leaver.done for leaver in leavers))
            await wait_until(lambda: core.dedup.in_flight == 0)
            fake_ollama.resume()
            await wait_until(lambda: fake_ollama.hangups() == 1)  # it saw the request closed
    finally:
        fake_ollama.resume()
    assert fake_ollama.count("/api/chat") == 1
    [call] = events(metrics_path, "llm_call")
    assert (call["deduplicated"], call["error_kind"]) == (False, "cancelled")
    assert events(metrics_path, "reply_out") == []
    assert core.history.get(1) == core.history.get(2) == ()


@pytest.mark.parametrize(
    ("fault", "kind"),
    [(Fault.ERROR_LINE, LLMErrorKind.STREAM_ERROR), (Fault.DISCONNECT, LLMErrorKind.DISCONNECTED)],
    ids=["error_line", "disconnect"],
)
async def test_a_failure_mid_stream_reaches_every_consumer_and_counts_per_message(
    fake_ollama: FakeOllama,
    metrics_path: Path,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    kind: LLMErrorKind,
) -> None:
    fake_ollama.fault = fault
    fake_ollama.pause(after_tokens=2)
    try:
        async with (
            running_core(fake_ollama, metrics_path) as core,
            anyio.create_task_group() as group,
        ):
            consumers = [await Consumer(core, c, "hi").start(group, pieces=2) for c in (1, 2)]
            fake_ollama.resume()
    finally:
        fake_ollama.resume()
    tokens = reply_tokens("hi")
    for consumer in consumers:
        *streamed, explanation = consumer.pieces
        assert streamed == tokens[: len(tokens) // 2]
        assert explanation.startswith("\n\n")
        assert 0 < len(explanation) < 200
    assert consumers[0].pieces == consumers[1].pieces
    assert fake_ollama.count("/api/chat") == 1
    assert core.errors == {kind: 2}
    assert core.dedup.stats.errors == 1
    assert caplog.text.count("LLM call failed") == 1
    assert core.history.get(1) == core.history.get(2) == ()
    calls = events(metrics_path, "llm_call")
    assert sorted((e["deduplicated"], e["error_kind"]) for e in calls) == [
        (False, kind.value),
        (True, kind.value),
    ]
    assert [e["error_kind"] for e in events(metrics_path, "reply_out")] == [kind.value] * 2


async def test_a_failure_before_any_piece_is_the_only_piece(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    fake_ollama.fault = Fault.SERVER_ERROR
    async with (
        running_core(fake_ollama, metrics_path) as core,
        aclosing(core.stream(1, "ann", "hello")) as pieces,
    ):
        received = [piece async for piece in pieces]
    assert received == ["The Ollama server failed (HTTP 500); please try again later."]


async def test_a_runaway_reply_is_cut_off_answered_and_counted(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path, max_reply_chunks=3) as core:
        reply = await core.handle(1, "ann", "tell me everything")
        assert reply.error is LLMErrorKind.TOO_LONG
        assert reply.text == "The answer grew too long to send; please ask for a shorter one."
        assert core.errors[LLMErrorKind.TOO_LONG] == 1
        assert core.history.get(1) == ()  # a failed turn leaves no history
    (reply_out,) = events(metrics_path, "reply_out")
    assert (reply_out["error"], reply_out["error_kind"]) == (True, "too_long")


FAILURES: list[tuple[Fault | None, str, float, LLMErrorKind, str]] = [
    (None, "missing-model", 30.0, LLMErrorKind.MODEL_MISSING, "ollama pull missing-model"),
    (Fault.SERVER_ERROR, "llama3.2", 30.0, LLMErrorKind.SERVER_ERROR, "HTTP 500"),
    (Fault.HANG, "llama3.2", 0.2, LLMErrorKind.TIMEOUT, "more than 0.2 s"),
    (Fault.DISCONNECT, "llama3.2", 30.0, LLMErrorKind.DISCONNECTED, "broke off"),
    (Fault.ERROR_LINE, "llama3.2", 30.0, LLMErrorKind.STREAM_ERROR, "stopped with an error"),
]


@pytest.mark.parametrize(
    ("fault", "model", "seconds", "kind", "says"),
    FAILURES,
    ids=[kind.value for _, _, _, kind, _ in FAILURES],
)
async def test_an_ollama_failure_is_answered_logged_and_counted(
    fake_ollama: FakeOllama,
    metrics_path: Path,
    caplog: pytest.LogCaptureFixture,
    fault: Fault | None,
    model: str,
    seconds: float,
    kind: LLMErrorKind,
    says: str,
) -> None:
    fake_ollama.fault = fault
    async with running_core(fake_ollama, metrics_path, seconds=seconds, model=model) as core:
        reply = await core.handle(1, "ann", "hello")
        assert core.history.get(1) == ()
    assert reply.error is kind
    assert says in reply.text
    assert len(reply.text) < 200
    assert core.errors == {kind: 1}
    assert "LLM call failed" in caplog.text
    [call] = events(metrics_path, "llm_call")
    assert (call["error"], call["error_kind"], call["deduplicated"]) == (True, kind.value, False)


async def test_ollama_down_is_answered(metrics_path: Path) -> None:
    with FakeOllama() as server:
        url = server.url  # nothing listens on this port once the server has stopped
    async with BotCore(OllamaChat(host=url), metrics_path=metrics_path) as core:
        reply = await core.handle(1, "ann", "hello")
    assert reply.error is LLMErrorKind.UNAVAILABLE
    assert "is Ollama running?" in reply.text
    assert core.errors == {LLMErrorKind.UNAVAILABLE: 1}


async def test_the_bot_answers_again_once_ollama_recovers(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        fake_ollama.fault = Fault.SERVER_ERROR
        failed = await core.handle(1, "ann", "hello")
        fake_ollama.fault = None
        answered = await core.handle(1, "ann", "hello")
    assert (failed.ok, answered.ok) == (False, True)
    assert fake_ollama.conversations()[-1] == [system(), user("hello")]


async def test_a_shared_failure_reaches_every_waiter_and_costs_one_call(
    fake_ollama: FakeOllama, metrics_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ollama.fault = Fault.SERVER_ERROR
    async with running_core(fake_ollama, metrics_path) as core:
        replies = await ask_together(core, fake_ollama, [(1, "hi"), (2, "hi"), (3, "hi")])
    assert [reply.error for reply in replies] == [LLMErrorKind.SERVER_ERROR] * 3
    assert fake_ollama.count("/api/chat") == 1
    assert core.dedup.stats.errors == 1
    assert core.errors == {LLMErrorKind.SERVER_ERROR: 3}
    assert caplog.text.count("LLM call failed") == 1


async def test_metrics_land_in_the_file_with_their_fields(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        reply = await core.handle(7, "ann", "hello there")
    [message_in] = events(metrics_path, "message_in")
    assert message_in["channel"] == 7
    assert message_in["chars"] == len("hello there")
    assert message_in["author"] != "ann"
    [call] = events(metrics_path, "llm_call")
    assert (call["channel"], call["deduplicated"], call["error"], call["error_kind"]) == (
        7,
        False,
        False,
        None,
    )
    assert call["eval_count"] == len(reply.text.split())
    assert call["prompt_eval_count"] > 0
    assert 0 < call["ttft_ms"] <= call["latency_ms"]
    for name in ("total_duration_ms", "load_duration_ms", "eval_duration_ms", "tokens_per_s"):
        assert call[name] > 0, name
    [reply_out] = events(metrics_path, "reply_out")
    assert (reply_out["channel"], reply_out["chars"], reply_out["parts"]) == (7, len(reply.text), 1)
    assert reply_out["latency_ms"] >= call["latency_ms"]
    [timing] = events(metrics_path, "ollama.chat")
    assert timing["error"] is False
    stats = core.metrics.stats
    assert stats.recorded == stats.written == 4


async def test_shared_calls_are_recorded_as_deduplicated_without_ollamas_numbers(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        await ask_together(core, fake_ollama, [(1, "hi"), (2, "hi"), (3, "hi")])
    calls = events(metrics_path, "llm_call")
    made = [call for call in calls if not call["deduplicated"]]
    shared = [call for call in calls if call["deduplicated"]]
    assert (len(made), len(shared)) == (1, 2)
    assert made[0]["eval_count"] > 0
    assert {call["eval_count"] for call in shared} == {None}
    assert len(events(metrics_path, "reply_out")) == 3


async def test_an_abandoned_call_is_cancelled_and_recorded(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        fake_ollama.pause()
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(core.handle, 1, "ann", "hello")
                    await wait_until(lambda: fake_ollama.count("/api/chat") == 1)
                    scope.cancel()
            await wait_until(lambda: "ollama.chat" in core.latency.summary())
        finally:
            fake_ollama.resume()
    [call] = events(metrics_path, "llm_call")
    assert (call["error"], call["error_kind"]) == (True, "cancelled")
    assert events(metrics_path, "reply_out") == []


async def test_a_core_closed_without_starting_still_writes_its_events(
    fake_ollama: FakeOllama, metrics_path: Path
) -> None:
    core = BotCore(OllamaChat(host=fake_ollama.url), metrics_path=metrics_path)
    await core.handle(1, "ann", "hello")
    await core.aclose()
    await core.aclose()
    assert [event["event"] for event in read_metrics(metrics_path)] == [
        "message_in",
        "ollama.chat",
        "llm_call",
        "reply_out",
    ]


async def test_starts_only_once(fake_ollama: FakeOllama, metrics_path: Path) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        with pytest.raises(RuntimeError, match="started once"):
            await core.start()


async def test_events_after_closing_are_dropped_with_a_debug_line(
    fake_ollama: FakeOllama, metrics_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_core(fake_ollama, metrics_path) as core:
        core.record("before")
    caplog.set_level(logging.DEBUG, logger="examples.chatcore.core")
    core.record("after", channel=1)
    assert "after event after the core closed, not recorded" in caplog.text
    assert [event["event"] for event in read_metrics(metrics_path)] == ["before"]


def test_normalize_ignores_case_and_spacing() -> None:
    assert normalize("  What IS\tthe\n GIL? ") == "what is the gil?"


def test_rejects_a_history_shorter_than_one_exchange(metrics_path: Path) -> None:
    with pytest.raises(ValueError, match="max_messages must be >= 2"):
        BotCore(OllamaChat(), metrics_path=metrics_path, max_messages=1)
