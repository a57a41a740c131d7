"""The Telegram example: the real aiogram client against a Bot API server on 127.0.0.1.

``tests/fake_telegram.py`` speaks the Bot API (long polling, sendMessage, editMessageText,
flood control); ``examples/chatcore/fake_ollama.py`` speaks Ollama's. aiogram runs on asyncio
only, so these tests do too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.types import Chat, Message, MessageEntity, User
from fake_telegram import BOT_ID, BOT_USERNAME, TOKEN, FakeTelegram

from botperf import EditPacer, read_metrics, split_message
from examples.chatcore.core import EMPTY_REPLY, BotCore
from examples.chatcore.fake_ollama import FakeOllama, Fault, canned_reply
from examples.chatcore.llm import OllamaChat
from examples.telegram_bot.__main__ import main
from examples.telegram_bot.bot import (
    TELEGRAM_LIMIT,
    TelegramChatBot,
    make_bot,
    should_answer,
    strip_mention,
    telegram_retry_after,
)

ROOT = Path(__file__).resolve().parent.parent
GROUP = -100200300  # group chats have negative ids

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for the bot (another task, and servers in threads) to get there; a safety net."""
    with anyio.fail_after(20):
        while not predicate():  # noqa: ASYNC110  (no event to wait for: servers in threads)
            await anyio.sleep(0.005)


@asynccontextmanager
async def running(
    telegram: FakeTelegram,
    ollama_url: str,
    tmp_path: Path,
    *,
    stopped_inside: bool = False,
    **core_options: Any,
) -> AsyncIterator[TelegramChatBot]:
    """The bot polling ``telegram``, its core on ``ollama_url``; stopped and closed after.

    With ``stopped_inside``, the test stops the bot itself, inside the block.
    """
    core = BotCore(
        OllamaChat(host=ollama_url),
        metrics_path=tmp_path / "metrics.jsonl",
        max_length=TELEGRAM_LIMIT,
        **core_options,
    )
    # Short intervals: the pacing itself is the library's (tests/test_replies.py).
    chat_bot = TelegramChatBot(
        core,
        bot=make_bot(TOKEN, api_url=telegram.url),
        pacer=EditPacer(interval=0.02),
        group_pacer=EditPacer(interval=0.02),
    )
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: chat_bot.run(handle_signals=False, polling_timeout=1))
        await until(lambda: bool(telegram.calls("getUpdates")))
        try:
            yield chat_bot
        finally:
            if not stopped_inside:
                await chat_bot.stop()


def events(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    return [event for event in read_metrics(tmp_path / "metrics.jsonl") if event["event"] == name]


# Who the bot answers, without a network.

ME = User(id=BOT_ID, is_bot=True, first_name="bot", username=BOT_USERNAME)
ANN = User(id=7, is_bot=False, first_name="Ann")


def message(
    text: str,
    *,
    chat_type: str = "group",
    author: User = ANN,
    entities: list[MessageEntity] | None = None,
    reply_to: Message | None = None,
) -> Message:
    return Message(
        message_id=1,
        date=0,  # type: ignore[arg-type]  # pydantic reads a Unix time
        chat=Chat(id=7 if chat_type == "private" else GROUP, type=chat_type),
        from_user=author,
        text=text,
        entities=entities,
        reply_to_message=reply_to,
    )


def mention(text: str, offset: int = 0) -> list[MessageEntity]:
    return [MessageEntity(type="mention", offset=offset, length=len(text))]


def test_answers_every_message_in_a_private_chat() -> None:
    assert should_answer(message("hi", chat_type="private"), ME)


def test_answers_a_group_message_that_mentions_it() -> None:
    text = f"so @{BOT_USERNAME} what is a GIL?"
    assert should_answer(message(text, entities=mention(f"@{BOT_USERNAME}", 3)), ME)


def test_answers_a_group_message_that_replies_to_it() -> None:
    own = message("an earlier answer", author=ME)
    assert should_answer(message("and then?", reply_to=own), ME)


def test_answers_a_text_mention_of_it() -> None:
    entity = MessageEntity(type="text_mention", offset=0, length=3, user=ME)
    assert should_answer(message("bot, hi", entities=[entity]), ME)


def test_ignores_group_messages_for_others() -> None:
    assert not should_answer(message("hello all"), ME)
    assert not should_answer(message("@someone_else hi", entities=mention("@someone_else")), ME)
    assert not should_answer(message("hmm", reply_to=message("Ann's message")), ME)


def test_ignores_bots() -> None:
    other = User(id=99, is_bot=True, first_name="other bot")
    assert not should_answer(message("hi", chat_type="private", author=other), ME)


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        (f"@{BOT_USERNAME} what is a GIL?", "what is a GIL?"),
        (f"hey @{BOT_USERNAME.upper()}, help", "hey help"),
        ("@someone_else not me", "@someone_else not me"),
        (f"@{BOT_USERNAME}", ""),
    ],
)
def test_strips_only_its_own_mention(text: str, stripped: str) -> None:
    assert strip_mention(text, BOT_USERNAME) == stripped


def test_flood_control_is_a_rate_limit_and_other_errors_are_not() -> None:
    method = SendMessage(chat_id=7, text="x")
    assert telegram_retry_after(TelegramRetryAfter(method, "Too Many Requests", 3)) == 3.0
    assert telegram_retry_after(TelegramBadRequest(method, "Bad Request: chat not found")) is None


# The bot against the servers.


@asyncio_only
@pytest.mark.anyio
async def test_a_question_gets_a_streamed_reply_whose_final_text_is_the_answer(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    answer = canned_reply("what is a GIL?", tokens=60)
    with FakeOllama(time_to_first_token=0.01, token_delay=0.005, reply_tokens=60) as ollama:
        async with running(telegram, ollama.url, tmp_path):
            asked = telegram.push("what is a GIL?")
            await until(lambda: telegram.texts(7) == [answer])
    shown = telegram.shown(7)
    assert len(shown) == 1
    assert len(shown[0]) > 1  # sent at once, then edited as the model wrote
    assert all(answer.startswith(text) for text in shown[0])
    assert telegram.replied_to(7) == [asked]
    assert telegram.calls("sendChatAction")  # "typing..." until the first words
    assert [conversation[-1]["content"] for conversation in ollama.conversations()] == [
        "what is a GIL?"
    ]


@asyncio_only
@pytest.mark.anyio
async def test_stopping_lets_a_reply_in_progress_finish_before_the_session_closes(
    telegram: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answer = canned_reply("tell me more", tokens=80)
    with FakeOllama(time_to_first_token=0.01, token_delay=0.01, reply_tokens=80) as ollama:
        async with running(telegram, ollama.url, tmp_path, stopped_inside=True) as chat_bot:
            telegram.push("tell me more")
            await until(lambda: bool(telegram.texts(7)))  # the first words are shown
            assert telegram.texts(7) != [answer]
            with caplog.at_level(logging.WARNING, logger="examples.telegram_bot.bot"):
                await chat_bot.stop()
    assert telegram.texts(7) == [answer]
    assert [r.getMessage() for r in caplog.records if r.name == "examples.telegram_bot.bot"] == []


@asyncio_only
@pytest.mark.anyio
async def test_it_records_the_same_metric_events_as_the_discord_bot(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    with FakeOllama(time_to_first_token=0.01, token_delay=0.001) as ollama:
        async with running(telegram, ollama.url, tmp_path):
            telegram.push("hello")
            await until(lambda: telegram.texts(7) == [canned_reply("hello")])
    (message_in,) = events(tmp_path, "message_in")
    (llm_call,) = events(tmp_path, "llm_call")
    (reply_out,) = events(tmp_path, "reply_out")
    assert message_in["channel"] == 7
    assert message_in["author"] != "7"  # a keyed hash, never the user's id
    assert llm_call["deduplicated"] is False
    assert llm_call["error"] is False
    assert reply_out["chars"] == len(canned_reply("hello"))
    assert reply_out["parts"] == 1
    assert len(events(tmp_path, "ollama.chat")) == 1


@asyncio_only
@pytest.mark.anyio
async def test_a_long_reply_continues_in_new_messages_of_at_most_4096_characters(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    answer = canned_reply("tell me everything", tokens=1500)
    expected = split_message(answer, max_length=TELEGRAM_LIMIT)
    assert len(expected) >= 2
    with FakeOllama(time_to_first_token=0.0, token_delay=0.0, reply_tokens=1500) as ollama:
        async with running(telegram, ollama.url, tmp_path):
            telegram.push("tell me everything")
            await until(lambda: telegram.texts(7) == expected)
    assert all(len(text) <= TELEGRAM_LIMIT for text in telegram.texts(7))
    (reply_out,) = events(tmp_path, "reply_out")
    assert reply_out["parts"] == len(expected)


@asyncio_only
@pytest.mark.anyio
async def test_a_429_is_waited_out_and_the_reply_still_arrives(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    answer = canned_reply("slowly")
    with FakeOllama(time_to_first_token=0.01, token_delay=0.005) as ollama:
        async with running(telegram, ollama.url, tmp_path):
            telegram.rate_limit("editMessageText", times=1, retry_after=1)
            telegram.push("slowly")
            await until(lambda: telegram.texts(7) == [answer])
    edits = telegram.calls("editMessageText")
    limited = [call for call in edits if call.status == 429]
    assert len(limited) == 1
    after = [call for call in edits if call.at > limited[0].at]
    assert after  # it edited again, after the 429
    assert after[0].at - limited[0].at >= 1.0  # not before Telegram's retry_after


@asyncio_only
@pytest.mark.anyio
async def test_ollama_down_gives_a_short_message(telegram: FakeTelegram, tmp_path: Path) -> None:
    async with running(telegram, f"http://127.0.0.1:{closed_port()}", tmp_path):
        telegram.push("anyone there?")
        await until(lambda: bool(telegram.texts(7)))
    assert telegram.texts(7) == ["I can't reach the language model right now (is Ollama running?)."]
    (reply_out,) = events(tmp_path, "reply_out")
    assert reply_out["error_kind"] == "unavailable"


@asyncio_only
@pytest.mark.anyio
async def test_in_a_group_it_answers_mentions_and_replies_and_ignores_the_rest(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    with FakeOllama(time_to_first_token=0.01, token_delay=0.001) as ollama:
        async with running(telegram, ollama.url, tmp_path):
            telegram.push("talking among ourselves", chat_id=GROUP, chat_type="supergroup")
            asked = telegram.push(
                "what is asyncio?", chat_id=GROUP, chat_type="supergroup", mention=True
            )
            await until(lambda: telegram.texts(GROUP) == [canned_reply("what is asyncio?")])
            (reply,) = telegram.sent_ids(GROUP)
            telegram.push("still ignored", chat_id=GROUP, chat_type="supergroup")
            telegram.push("and trio?", chat_id=GROUP, chat_type="supergroup", reply_to=reply)
            await until(lambda: len(telegram.texts(GROUP)) == 2)
            await until(lambda: telegram.texts(GROUP)[1] == canned_reply("and trio?"))
    assert telegram.replied_to(GROUP)[0] == asked
    asked_ollama = [conversation[-1]["content"] for conversation in ollama.conversations()]
    assert asked_ollama == ["what is asyncio?", "and trio?"]  # the mention stripped


@asyncio_only
@pytest.mark.anyio
async def test_start_greets_and_reset_forgets_the_chat(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    with FakeOllama(time_to_first_token=0.01, token_delay=0.001) as ollama:
        async with running(telegram, ollama.url, tmp_path) as chat_bot:
            telegram.push("/start")
            await until(lambda: len(telegram.texts(7)) == 1)
            assert "Ask me anything" in telegram.texts(7)[0]
            telegram.push("first question")
            await until(lambda: telegram.texts(7)[1:] == [canned_reply("first question")])
            telegram.push("/reset")
            await until(lambda: telegram.texts(7)[2:] == ["History cleared."])
            telegram.push("second question")
            await until(lambda: telegram.texts(7)[3:] == [canned_reply("second question")])
            assert isinstance(chat_bot.core, BotCore)
    first, second = ollama.conversations()
    assert [m["content"] for m in first if m["role"] != "system"] == ["first question"]
    assert [m["content"] for m in second if m["role"] != "system"] == ["second question"]
    assert telegram.calls("setMyCommands")  # the command menu


@asyncio_only
@pytest.mark.anyio
async def test_an_empty_reply_still_gets_a_message(telegram: FakeTelegram, tmp_path: Path) -> None:
    sent: list[str] = []

    async def send(text: str) -> int:
        sent.append(text)
        return 0

    async def edit(handle: int, text: str) -> None:
        raise AssertionError("one message, sent once")

    with FakeOllama(time_to_first_token=0.0, token_delay=0.0) as ollama:
        ollama.fault = Fault.EMPTY_REPLY  # the model says nothing visible
        core = BotCore(OllamaChat(host=ollama.url), metrics_path=tmp_path / "metrics.jsonl")
        async with core:
            chat_bot = TelegramChatBot(core, bot=make_bot(TOKEN, api_url=telegram.url))
            await chat_bot.answer(7, "ann", "hi", send, edit, None)
            await chat_bot.bot.session.close()
    assert sent == [EMPTY_REPLY]  # the core's placeholder: Telegram refuses empty messages


# The command line.


def test_a_missing_token_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], environ={}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "TELEGRAM_TOKEN is not set" in err


def test_a_malformed_token_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], environ={"TELEGRAM_TOKEN": "not-a-token"}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a bot token" in err


def test_a_rejected_token_is_one_line_and_status_2(
    telegram: FakeTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"TELEGRAM_TOKEN": "654321:wrong-token", "TELEGRAM_API_URL": telegram.url}
    assert main([], environ=env) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "rejected TELEGRAM_TOKEN" in err


def test_an_unreachable_server_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    assert main([], environ={"TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": url}) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the Bot API at {url}")
    assert err.count("\n") == 1


# One run of the module itself (it imports aiogram afresh: slow on a busy machine).
def test_the_module_answers_then_stops_on_sigterm_with_its_metrics_written(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    metrics = tmp_path / "bot.jsonl"
    with FakeOllama(time_to_first_token=0.01, token_delay=0.001) as ollama:
        env = {
            "TELEGRAM_TOKEN": TOKEN,
            "TELEGRAM_API_URL": telegram.url,
            "OLLAMA_HOST": ollama.url,
            "OLLAMA_MODEL": "llama3.2",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "examples.telegram_bot", "--metrics", str(metrics)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60  # a safety net, not a timing
            while not telegram.calls("getUpdates") and time.monotonic() < deadline:
                time.sleep(0.01)
            telegram.push("hello from the command line")
            answer = canned_reply("hello from the command line")
            while telegram.texts(7) != [answer] and time.monotonic() < deadline:
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert telegram.texts(7) == [answer]
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "logged in as @botperf_test_bot" in stderr
    names = [event["event"] for event in read_metrics(metrics)]
    assert sorted(set(names)) == ["llm_call", "message_in", "ollama.chat", "reply_out"]
