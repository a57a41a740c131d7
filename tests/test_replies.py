"""ReplyStreamer and EditPacer: paced, coalesced edits, rate limits, the final text, cancellation.

Time is a fake clock that only moves when a test or a sleep moves it, so no test waits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botperf import EditPacer, InvalidOptionError, ReplyStreamer, split_message

pytestmark = pytest.mark.anyio


class FakeTime:
    """A clock that moves only when told to, and a sleep that moves it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()

    def pacer(self, **options: float) -> EditPacer:
        return EditPacer(clock=self.clock, sleep=self.sleep, **options)  # type: ignore[arg-type]


class RateLimited(Exception):
    """Like discord.RateLimited and aiogram's TelegramRetryAfter: a numeric `retry_after`."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429: retry after {retry_after}")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Call:
    kind: str  # "send" or "edit"
    handle: int
    text: str
    at: float


@dataclass
class FakeChat:
    """A chat platform: messages by handle, each call recorded with the fake time it came."""

    time: FakeTime
    messages: dict[int, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_next: list[Exception] = field(default_factory=list)  # raised by the next calls

    async def send(self, text: str) -> int:
        self._fail()
        handle = len(self.messages)
        self.messages[handle] = text
        self.calls.append(Call("send", handle, text, self.time.now))
        await anyio.lowlevel.checkpoint()
        return handle

    async def edit(self, handle: int, text: str) -> None:
        self._fail()
        assert handle in self.messages, "edited a message that was never sent"
        self.messages[handle] = text
        self.calls.append(Call("edit", handle, text, self.time.now))
        await anyio.lowlevel.checkpoint()

    def _fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def shown(self) -> list[str]:
        return [self.messages[handle] for handle in sorted(self.messages)]

    def times(self, kind: str | None = None) -> list[float]:
        return [call.at for call in self.calls if kind is None or call.kind == kind]


def streamer(
    chat: FakeChat, pacer: EditPacer, target: Hashable = "channel", **options: object
) -> ReplyStreamer[int]:
    return ReplyStreamer(chat.send, chat.edit, target=target, pacer=pacer, **options)  # type: ignore[arg-type]


async def stream(reply: ReplyStreamer[int], time: FakeTime, chunks: list[str], step: float) -> None:
    for chunk in chunks:
        time.now += step
        await reply.feed(chunk)


def gaps(times: list[float]) -> list[float]:
    # Rounded, so that float sums on the fake clock do not make 1.0 into 0.9999999999999998.
    return [round(later - earlier, 9) for earlier, later in itertools.pairwise(times)]


# 1. Pacing


async def test_the_first_chunk_is_sent_at_once() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0))
    await reply.feed("Hel")
    assert chat.calls == [Call("send", 0, "Hel", 0.0)]


async def test_the_first_chunk_is_sent_at_once_even_while_the_target_is_paced() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    pacer = time.pacer(interval=1.0)
    await streamer(chat, pacer).feed("first reply")
    time.now = 0.1
    await streamer(chat, pacer).feed("second reply")
    assert [(call.kind, call.at) for call in chat.calls] == [("send", 0.0), ("send", 0.1)]


async def test_edits_of_one_target_are_at_least_the_interval_apart() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0))
    await stream(reply, time, [f"w{i} " for i in range(500)], step=0.013)
    await reply.finish()
    assert len(chat.calls) > 5
    assert min(gaps(chat.times())) >= 1.0


async def test_two_replies_into_one_target_share_its_pace() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    pacer = time.pacer(interval=1.0)
    first, second = streamer(chat, pacer), streamer(chat, pacer)
    for i in range(400):
        time.now += 0.01
        await first.feed(f"a{i} ")
        await second.feed(f"b{i} ")
    await first.finish()
    await second.finish()
    edits = chat.times("edit")
    assert len(edits) > 3
    assert min(gaps(edits)) >= 1.0
    assert chat.shown() == [
        "".join(f"a{i} " for i in range(400)),
        "".join(f"b{i} " for i in range(400)),
    ]


async def test_different_targets_do_not_wait_for_each_other() -> None:
    time = FakeTime()
    chats = FakeChat(time), FakeChat(time)
    pacer = time.pacer(interval=1.0)
    replies = streamer(chats[0], pacer, "a"), streamer(chats[1], pacer, "b")
    for i in range(300):
        time.now += 0.01
        for reply in replies:
            await reply.feed(f"{i} ")
    assert chats[0].times() == chats[1].times()
    assert len(chats[0].times()) == 3  # sent at 0.01, edited at 1.01 and 2.01


async def test_a_rate_limit_doubles_the_interval_and_waits_for_retry_after() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    pacer = time.pacer(interval=1.0, max_interval=8.0)
    reply = streamer(chat, pacer)
    await reply.feed("a")  # sent at 0
    time.now = 1.0
    chat.fail_next.append(RateLimited(retry_after=3.0))
    await reply.feed("b")  # the edit at 1.0 is refused
    assert pacer.interval_for("channel") == 2.0
    assert pacer.delay("channel") == 3.0  # retry_after beats the new interval
    time.now = 3.9
    await reply.feed("c")
    assert chat.times() == [0.0]  # still waiting
    time.now = 4.0
    await reply.feed("d")
    assert chat.calls[-1] == Call("edit", 0, "abcd", 4.0)


async def test_after_a_rate_limit_the_next_attempt_waits_at_least_the_new_interval() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    pacer = time.pacer(interval=1.0, max_interval=30.0)
    reply = streamer(chat, pacer)
    await reply.feed("a")
    for expected in (2.0, 4.0, 8.0):
        time.now += pacer.delay("channel")
        chat.fail_next.append(RateLimited(retry_after=0.5))
        await reply.feed("x")
        assert pacer.interval_for("channel") == expected
        assert pacer.delay("channel") == expected


async def test_the_interval_grows_no_further_than_max_interval() -> None:
    time = FakeTime()
    pacer = time.pacer(interval=1.0, max_interval=5.0)
    for _ in range(10):
        pacer.record_rate_limit("channel", retry_after=None)
    assert pacer.interval_for("channel") == 5.0
    assert pacer.delay("channel") == 5.0


async def test_successful_edits_bring_the_interval_back_within_a_few_edits() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    pacer = time.pacer(interval=1.0, max_interval=30.0)
    reply = streamer(chat, pacer)
    await reply.feed("start")
    for _ in range(6):
        time.now += pacer.delay("channel")
        chat.fail_next.append(RateLimited(retry_after=0.0))
        await reply.feed(".")
    assert pacer.interval_for("channel") == 30.0
    edits = 0
    while pacer.interval_for("channel") > 1.0:
        time.now += pacer.delay("channel")
        await reply.feed(".")
        edits += 1
    assert edits <= 5  # 30 -> 15 -> 7.5 -> 3.75 -> 1.875 -> 1


# 2. Coalescing


async def test_chunks_between_edits_are_coalesced_into_the_next_edit() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0))
    for chunk in ["The ", "quick ", "brown "]:
        await reply.feed(chunk)
    time.now = 1.0
    await reply.feed("fox")
    assert [(call.kind, call.text) for call in chat.calls] == [
        ("send", "The "),
        ("edit", "The quick brown fox"),
    ]
    assert reply.text == "The quick brown fox"


async def test_a_firehose_makes_no_more_edits_than_elapsed_time_over_interval() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0), max_length=100_000)
    await stream(reply, time, ["token "] * 10_000, step=0.001)
    elapsed = time.now
    during = len(chat.calls)
    await reply.finish()
    assert during <= math.floor(elapsed / 1.0) + 1  # the first send, then one per interval
    assert len(chat.calls) <= during + 1  # plus the final edit
    assert chat.shown() == ["token " * 10_000]


@given(
    steps=st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=200),
    interval=st.sampled_from([0.25, 1.0, 2.5]),
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_edits_stay_within_the_pace_for_any_timing(
    steps: list[float], interval: float, backend: str
) -> None:
    async def main() -> None:
        time = FakeTime()
        chat = FakeChat(time)
        reply = streamer(chat, time.pacer(interval=interval), max_length=100)
        for index, step in enumerate(steps):
            time.now += step
            await reply.feed(f"{index} ")
        during = len(chat.calls)
        await reply.finish()
        assert during <= math.floor(time.now / interval) + 1
        assert all(gap >= interval for gap in gaps(chat.times()))
        assert chat.shown() == split_message(reply.text, max_length=100)

    anyio.run(main, backend=backend)


# 3. The final text


async def test_finish_delivers_the_exact_text_when_the_last_chunk_came_right_after_an_edit() -> (
    None
):
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0))
    await reply.feed("Paris is")
    time.now = 1.0
    await reply.feed(" the capital")  # edited now
    await reply.feed(" of France.")  # too soon to edit
    assert chat.shown() == ["Paris is the capital"]
    handles = await reply.finish()
    assert handles == [0]
    assert chat.shown() == ["Paris is the capital of France."]
    assert chat.calls[-1].at == 2.0  # finish waited for the pace


async def test_finish_retries_rate_limits_until_the_text_is_delivered() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0, max_interval=30.0))
    await reply.feed("Hello")
    await reply.feed(", world")
    chat.fail_next += [RateLimited(retry_after=5.0), RateLimited(retry_after=0.1)]
    await reply.finish()
    assert chat.shown() == ["Hello, world"]
    assert chat.times() == [0.0, 1.0 + 5.0 + 4.0]  # refused at 1.0, then at 6.0


async def test_a_long_reply_continues_in_new_messages_split_by_split_message() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0), max_length=60)
    text = "Here is code:\n```python\n" + "".join(f"print({i})\n" for i in range(20)) + "```\nDone."
    await stream(reply, time, [text[i : i + 7] for i in range(0, len(text), 7)], step=0.3)
    handles = await reply.finish()
    assert chat.shown() == split_message(text, max_length=60)
    assert handles == sorted(chat.messages)
    assert reply.handles == handles


async def test_a_reply_that_outgrows_its_message_keeps_the_earlier_messages_final() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0), max_length=30)
    words = [f"word{i:02d} " for i in range(40)]
    await stream(reply, time, words, step=0.6)
    await reply.finish()
    sent = {call.handle: call.at for call in chat.calls if call.kind == "send"}
    for call in chat.calls:
        if call.kind == "edit" and call.handle + 1 in sent:
            assert call.at < sent[call.handle + 1], "edited a message after the next was sent"
    assert len(sent) > 3
    assert chat.shown() == split_message("".join(words), max_length=30)


@pytest.mark.parametrize("chunks", [[], [""], ["", ""], [" ", "\n\n", "\t"]])
async def test_an_empty_reply_sends_nothing(chunks: list[str]) -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer())
    for chunk in chunks:
        await reply.feed(chunk)
    assert await reply.finish() == []
    assert chat.calls == []


async def test_an_empty_reply_sends_empty_text_when_given() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(), empty_text="(no answer)")
    await reply.feed("  ")
    assert chat.calls == []
    assert await reply.finish() == [0]
    assert chat.shown() == ["(no answer)"]


async def test_empty_text_is_not_sent_for_a_reply_with_text() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(), empty_text="(no answer)")
    await reply.feed("an answer")
    await reply.finish()
    assert chat.shown() == ["an answer"]


async def test_other_exceptions_propagate_and_the_next_call_tries_again() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0))
    chat.fail_next.append(ConnectionError("network down"))
    with pytest.raises(ConnectionError, match="network down"):
        await reply.feed("Hello")
    assert chat.calls == []
    chat.fail_next.append(ValueError("bad request"))
    with pytest.raises(ValueError, match="bad request"):
        await reply.finish()
    assert await reply.finish() == [0]
    assert chat.shown() == ["Hello"]


async def test_finish_twice_returns_the_same_handles_and_feed_after_it_is_refused() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer())
    await reply.feed("done")
    handles = await reply.finish()
    assert await reply.finish() == handles
    with pytest.raises(RuntimeError, match="after finish"):
        await reply.feed("more")
    assert len(chat.calls) == 1


async def test_a_custom_retry_after_recognises_a_platform_rate_limit() -> None:
    class SlackApiError(Exception):
        def __init__(self, status_code: int, headers: dict[str, str]) -> None:
            self.status_code, self.headers = status_code, headers

    def slack_retry_after(exc: Exception) -> float | None:
        if isinstance(exc, SlackApiError) and exc.status_code == 429:
            return float(exc.headers["Retry-After"])
        return None

    time = FakeTime()
    chat = FakeChat(time)
    reply = streamer(chat, time.pacer(interval=1.0), retry_after=slack_retry_after)
    chat.fail_next.append(SlackApiError(429, {"Retry-After": "7"}))
    await reply.feed("hi")
    assert chat.calls == []
    await reply.finish()
    assert chat.calls == [Call("send", 0, "hi", 7.0)]
    chat.fail_next.append(SlackApiError(500, {}))
    other = streamer(chat, time.pacer(), retry_after=slack_retry_after)
    with pytest.raises(SlackApiError):
        await other.feed("boom")


@pytest.mark.parametrize("value", [True, "3", None, [1]])
async def test_the_default_reads_only_a_numeric_retry_after(value: object) -> None:
    time = FakeTime()
    chat = FakeChat(time)
    error = RuntimeError("not a rate limit")
    error.retry_after = value  # type: ignore[attr-defined]
    chat.fail_next.append(error)
    with pytest.raises(RuntimeError, match="not a rate limit"):
        await streamer(chat, time.pacer()).feed("x")


@pytest.mark.parametrize("wait", [-1.0, math.nan, math.inf])
async def test_a_retry_after_that_is_not_a_duration_is_an_error(wait: float) -> None:
    time = FakeTime()
    chat = FakeChat(time)
    chat.fail_next.append(RateLimited(wait))
    with pytest.raises(ValueError, match="retry_after"):
        await streamer(chat, time.pacer()).feed("x")


# 5. Bounded state


async def test_the_pacer_forgets_the_least_recently_paced_targets() -> None:
    time = FakeTime()
    pacer = time.pacer(interval=1.0, max_targets=3)
    for target in ["a", "b", "c"]:
        pacer.mark(target)
    pacer.mark("a")  # now "b" is the least recently paced
    pacer.mark("d")
    assert len(pacer) == 3
    assert pacer.delay("b") == 0.0  # forgotten
    assert [pacer.delay(target) for target in ["a", "c", "d"]] == [1.0, 1.0, 1.0]
    for index in range(1000):
        pacer.record_rate_limit(index)
    assert len(pacer) == 3


# 6. Backends and cancellation


async def test_cancelling_feed_during_an_edit_leaves_no_task_and_the_reply_recovers() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    entered, release = anyio.Event(), anyio.Event()

    async def slow_edit(handle: int, text: str) -> None:
        entered.set()
        await release.wait()
        await chat.edit(handle, text)

    reply: ReplyStreamer[int] = ReplyStreamer(
        chat.send, slow_edit, target="channel", pacer=time.pacer(interval=1.0)
    )
    await reply.feed("one")
    before = len(anyio.get_running_tasks())
    time.now = 1.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(reply.feed, " two")
        await entered.wait()
        tg.cancel_scope.cancel()
    assert len(anyio.get_running_tasks()) == before
    release.set()
    await reply.finish()
    assert chat.shown() == ["one two"]


async def test_cancelling_finish_while_it_waits_leaves_no_task_and_it_can_finish_later() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    waiting = anyio.Event()

    async def stuck_sleep(seconds: float) -> None:
        waiting.set()
        await anyio.sleep_forever()

    pacer = EditPacer(interval=1.0, clock=time.clock, sleep=stuck_sleep)
    reply = streamer(chat, pacer)
    await reply.feed("Hello")
    await reply.feed(", world")
    before = len(anyio.get_running_tasks())
    async with anyio.create_task_group() as tg:
        tg.start_soon(reply.finish)
        await waiting.wait()
        tg.cancel_scope.cancel()
    assert len(anyio.get_running_tasks()) == before
    assert chat.shown() == ["Hello"]
    time.now = 1.0
    assert await reply.finish() == [0]
    assert chat.shown() == ["Hello, world"]


async def test_finish_waits_for_an_edit_that_feed_is_making_in_another_task() -> None:
    time = FakeTime()
    chat = FakeChat(time)
    entered, release = anyio.Event(), anyio.Event()

    async def slow_edit(handle: int, text: str) -> None:
        entered.set()
        await release.wait()
        await chat.edit(handle, text)

    reply: ReplyStreamer[int] = ReplyStreamer(
        chat.send, slow_edit, target="channel", pacer=time.pacer(interval=1.0)
    )
    await reply.feed("one")
    time.now = 1.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(reply.feed, " two")
        await entered.wait()
        tg.start_soon(reply.finish)
        await reply.feed(" three")  # the edit in flight is not repeated, the text is kept
        release.set()
    assert chat.shown() == ["one two three"]
    assert [call.text for call in chat.calls] == ["one", "one two", "one two three"]


# Options


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"interval": -1.0}, "interval"),
        ({"interval": math.nan}, "interval"),
        ({"max_interval": 0.0}, "max_interval"),
        ({"interval": 5.0, "max_interval": 2.0}, "max_interval"),
        ({"max_targets": 0}, "max_targets"),
        ({"max_targets": 1.5}, "max_targets"),
        ({"clock": 3.0}, "clock"),
        ({"sleep": "soon"}, "sleep"),
    ],
)
def test_bad_pacer_options_are_invalid_option_errors(
    options: dict[str, object], option: str
) -> None:
    with pytest.raises(InvalidOptionError, match=option):
        EditPacer(**options)  # type: ignore[arg-type]


async def _send(text: str) -> int:
    return 0


async def _edit(handle: int, text: str) -> None:
    return None


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"target": ["unhashable"]}, "target"),
        ({"pacer": "pacer"}, "pacer"),
        ({"max_length": 19}, "max_length"),
        ({"max_length": "2000"}, "max_length"),
        ({"retry_after": 5}, "retry_after"),
        ({"empty_text": ""}, "empty_text"),
        ({"empty_text": "  "}, "empty_text"),
        ({"empty_text": "x" * 2001}, "empty_text"),
        ({"empty_text": 42}, "empty_text"),
        ({"send": "send"}, "send"),
    ],
)
def test_bad_streamer_options_are_invalid_option_errors(
    options: dict[str, object], option: str
) -> None:
    arguments: dict[str, object] = {
        "send": _send,
        "edit": _edit,
        "target": 1,
        "pacer": EditPacer(),
        **options,
    }
    with pytest.raises(InvalidOptionError, match=option):
        ReplyStreamer(**arguments)  # type: ignore[arg-type]


def test_the_pacer_reports_its_options() -> None:
    pacer = EditPacer(interval=0.5, max_interval=4.0, max_targets=7)
    assert (pacer.interval, pacer.max_interval, pacer.max_targets) == (0.5, 4.0, 7)
    assert pacer.interval_for("never seen") == 0.5
    assert len(pacer) == 0


async def test_feed_takes_only_text() -> None:
    time = FakeTime()
    reply = streamer(FakeChat(time), time.pacer())
    with pytest.raises(TypeError, match="str"):
        await reply.feed(b"bytes")  # type: ignore[arg-type]
