"""The discord.py adapter, tested without a network."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import discord
import pytest

from botperf import EditPacer
from examples.chatcore.core import EMPTY_REPLY, BotCore
from examples.chatcore.fake_ollama import FakeOllama, Fault, canned_reply, tokenize
from examples.chatcore.llm import OllamaChat
from examples.chatcore.protocol import ChatCore, Reply
from examples.discord_bot.bot import (
    ChatBot,
    discord_retry_after,
    run_bot,
    should_answer,
    strip_mention,
)

BOT_ID = 42


class FakeCore:
    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.asked: list[tuple[int, str, str]] = []
        self.started = 0
        self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def handle(self, channel_id: int, author: str, text: str) -> Reply:
        return Reply("".join(self.pieces))

    async def stream(self, channel_id: int, author: str, text: str) -> AsyncGenerator[str, None]:
        self.asked.append((channel_id, author, text))
        for piece in self.pieces:
            yield piece

    async def reset(self, channel_id: int) -> None:
        pass

    async def aclose(self) -> None:
        self.closed += 1


def make_bot(core: ChatCore | None = None, *, pacer: EditPacer | None = None) -> ChatBot:
    # A clock that jumps 10 s per reading: the edit pacer never makes a test wait.
    clock = itertools.count(0.0, 10.0).__next__
    if pacer is None:  # not `pacer or ...`: an EditPacer that remembers no target is falsy
        pacer = EditPacer(clock=clock)
    return ChatBot(core or FakeCore([]), pacer=pacer, sync_commands=False)


class FakeClock:
    """Time that moves only when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # discord.py runs on asyncio only
async def test_registers_ask_and_reset_slash_commands() -> None:
    bot = make_bot()
    await bot.setup_hook()  # adds the ChatCommands cog; sync_commands=False syncs nothing
    tree = bot.tree
    assert sorted(command.name for command in tree.get_commands()) == ["ask", "reset"]
    ask = tree.get_command("ask")
    assert isinstance(ask, discord.app_commands.Command)
    assert [parameter.name for parameter in ask.parameters] == ["question"]


def test_reads_message_content_and_pings_nobody() -> None:
    bot = make_bot()
    assert bot.intents.message_content
    mentions = bot.allowed_mentions
    assert mentions is not None
    assert not mentions.everyone
    assert not mentions.users
    assert not mentions.roles
    assert not mentions.replied_user


def answers(
    *,
    author_id: int = 1,
    author_is_bot: bool = False,
    in_dm: bool = False,
    mentioned_ids: tuple[int, ...] = (),
) -> bool:
    return should_answer(
        author_id=author_id,
        author_is_bot=author_is_bot,
        bot_id=BOT_ID,
        in_dm=in_dm,
        mentioned_ids=mentioned_ids,
    )


def test_answers_when_mentioned() -> None:
    assert answers(mentioned_ids=(7, BOT_ID))


def test_answers_in_direct_messages() -> None:
    assert answers(in_dm=True)


def test_stays_quiet_when_not_mentioned() -> None:
    assert not answers(mentioned_ids=(7,))


def test_ignores_other_bots() -> None:
    assert not answers(author_is_bot=True, in_dm=True, mentioned_ids=(BOT_ID,))


def test_ignores_itself() -> None:
    assert not answers(author_id=BOT_ID, in_dm=True)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (f"<@{BOT_ID}> what is a GIL?", "what is a GIL?"),
        (f"hey <@!{BOT_ID}>, help", "hey  , help"),
        ("<@7> not me", "<@7> not me"),
        (f"<@{BOT_ID}>", ""),
    ],
)
def test_strips_only_its_own_mention(content: str, text: str) -> None:
    assert strip_mention(content, BOT_ID) == text


@pytest.mark.anyio
async def test_reply_streams_once_typing_stops() -> None:
    core = FakeCore(["Hel", "lo", "!"])
    log: list[str] = []
    messages: list[str] = []

    @asynccontextmanager
    async def typing() -> AsyncGenerator[None, None]:
        log.append("typing")
        yield
        log.append("typing done")

    async def send(content: str) -> int:
        log.append(f"send {content}")
        messages.append(content)
        return len(messages) - 1

    async def edit(message: int, content: str) -> None:
        log.append(f"edit {content}")
        messages[message] = content

    await make_bot(core).answer(5, "ann", "hi", send, edit, typing())
    assert core.asked == [(5, "ann", "hi")]
    assert log == ["typing", "typing done", "send Hel", "edit Hello", "edit Hello!"]
    assert messages == ["Hello!"]


@pytest.mark.anyio
async def test_channels_asking_at_once_each_render_the_one_shared_stream(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    core = BotCore(OllamaChat(host=fake_ollama.url), metrics_path=tmp_path / "metrics.jsonl")
    bot = make_bot(core)
    shown: dict[int, list[str]] = {1: [], 2: []}  # what each channel's message showed

    def sender(channel: int) -> Callable[[str], Awaitable[int]]:
        async def send(content: str) -> int:
            shown[channel].append(content)
            return 0

        return send

    def editor(channel: int) -> Callable[[int, str], Awaitable[None]]:
        async def edit(message: int, content: str) -> None:
            shown[channel].append(content)

        return edit

    fake_ollama.pause()
    try:
        async with core, anyio.create_task_group() as group:
            for channel in shown:
                group.start_soon(
                    bot.answer, channel, "ann", "hi", sender(channel), editor(channel), None
                )
            with anyio.fail_after(10):  # a safety net: both arrive at once
                while core.dedup.stats.calls < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            fake_ollama.resume()
    finally:
        fake_ollama.resume()
    assert fake_ollama.count("/api/chat") == 1
    for updates in shown.values():
        assert updates[-1] == canned_reply("hi")
        assert len(updates) == len(tokenize(canned_reply("hi")))  # one edit per piece


@pytest.mark.anyio
async def test_failed_delivery_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def send(content: str) -> int:
        raise discord.RateLimited(3600.0)  # a wait of an hour is a failure, not a wait

    async def edit(message: int, content: str) -> None:
        raise AssertionError("nothing was sent, so nothing is edited")

    await make_bot(FakeCore(["x"])).answer(5, "ann", "hi", send, edit, None)
    assert "could not deliver the reply" in caplog.text


def http_error(status: int, headers: dict[str, str]) -> discord.HTTPException:
    response: Any = SimpleNamespace(status=status, reason="Too Many Requests", headers=headers)
    return discord.HTTPException(response, {"message": "slow down", "code": 0})


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (discord.RateLimited(12.5), 12.5),
        (http_error(429, {"Retry-After": "1.5"}), 1.5),
        (http_error(429, {}), 0.0),  # a 429 all the same: the pacer's interval decides
    ],
)
def test_discord_429s_are_rate_limits(error: Exception, retry_after: float) -> None:
    assert discord_retry_after(error) == retry_after


def test_other_http_errors_are_not_rate_limits() -> None:
    assert discord_retry_after(http_error(403, {})) is None
    assert discord_retry_after(ValueError("not from Discord")) is None


@pytest.mark.anyio
async def test_other_http_errors_are_logged_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def send(content: str) -> int:
        calls.append(content)
        raise http_error(403, {})

    async def edit(message: int, content: str) -> None:
        raise AssertionError("nothing was sent, so nothing is edited")

    await make_bot(FakeCore(["x"])).answer(5, "ann", "hi", send, edit, None)
    assert calls == ["x"]
    assert "could not deliver the reply" in caplog.text


@pytest.mark.anyio
async def test_a_429_is_waited_out_and_the_final_text_delivered() -> None:
    clock = FakeClock()
    messages: list[str] = []
    limited = [http_error(429, {"Retry-After": "2.5"})]

    async def send(content: str) -> int:
        messages.append(content)
        return len(messages) - 1

    async def edit(message: int, content: str) -> None:
        if limited:
            raise limited.pop()
        messages[message] = content

    pacer = EditPacer(interval=1.0, clock=clock, sleep=clock.sleep)
    await make_bot(FakeCore(["a", "b"]), pacer=pacer).answer(5, "ann", "hi", send, edit, None)
    assert messages == ["ab"]
    assert sum(clock.slept) >= 2.5  # Retry-After, at least
    assert pacer.interval_for(5) < 2.0  # the successful edit relaxed the doubled interval


@pytest.mark.anyio
async def test_delivery_gives_up_after_repeated_rate_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    messages: list[str] = []
    edits = 0

    async def send(content: str) -> int:
        messages.append(content)
        return 0

    async def edit(message: int, content: str) -> None:
        nonlocal edits
        edits += 1
        raise discord.RateLimited(2.0)

    pacer = EditPacer(interval=1.0, clock=clock, sleep=clock.sleep)
    await make_bot(FakeCore(["a", "b"]), pacer=pacer).answer(5, "ann", "hi", send, edit, None)
    assert messages == ["a"]
    assert edits == 11  # ten rate limits waited out, the eleventh given up on
    assert "could not deliver the reply" in caplog.text


# discord.py runs on asyncio only (its HTTP client is aiohttp).
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_close_closes_the_core_once() -> None:
    core = FakeCore([])
    bot = make_bot(core)
    await bot.close()
    await bot.close()
    assert core.closed == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_sigterm_closes_the_bot_and_the_core_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = FakeCore([])
    bot = make_bot(core)
    started = asyncio.Event()

    async def start(token: str, *, reconnect: bool = True) -> None:
        started.set()
        await asyncio.Event().wait()  # connected to Discord until a signal arrives

    monkeypatch.setattr(bot, "start", start)
    task = asyncio.create_task(run_bot(bot, "token"))
    await started.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, timeout=10)  # a safety net; the signal ends it at once
    assert bot.is_closed()
    assert (core.started, core.closed) == (1, 1)


@pytest.mark.anyio
async def test_a_stream_with_no_piece_sends_nothing() -> None:
    # What the core streams for a rate-limited user who was told to slow down already.
    def nothing(*args: Any) -> Any:
        raise AssertionError("nothing to send")

    core = FakeCore([])
    await make_bot(core).answer(5, "ann", "hi", nothing, nothing, None)
    assert core.asked == [(5, "ann", "hi")]


@pytest.mark.anyio
async def test_an_empty_reply_gets_the_cores_placeholder(tmp_path: Path) -> None:
    messages: list[str] = []

    async def send(content: str) -> int:
        messages.append(content)
        return 0

    async def edit(message: int, content: str) -> None:
        raise AssertionError("one message, sent once")

    with FakeOllama(time_to_first_token=0.0, token_delay=0.0) as ollama:
        ollama.fault = Fault.EMPTY_REPLY
        core = BotCore(OllamaChat(host=ollama.url), metrics_path=tmp_path / "metrics.jsonl")
        async with core:
            await make_bot(core).answer(5, "ann", "hi", send, edit, None)
    assert messages == [EMPTY_REPLY]
