"""The example's phase-1 core (no botperf primitives yet) against the fake Ollama."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from examples.discord_bot.core import PlainCore
from examples.discord_bot.fake_ollama import FakeOllama, Fault, canned_reply
from examples.discord_bot.llm import LLMErrorKind, OllamaChat
from examples.discord_bot.protocol import ChatCore

pytestmark = pytest.mark.anyio


def make_core(server: FakeOllama, *, timeout: float = 30.0) -> PlainCore:
    return PlainCore(OllamaChat(host=server.url, timeout=timeout), max_messages=4)


async def collect(core: ChatCore, channel: int, text: str) -> str:
    async with aclosing(core.stream(channel, "ann", text)) as pieces:
        return "".join([piece async for piece in pieces])


async def test_answers_with_the_models_reply(fake_ollama: FakeOllama) -> None:
    core = make_core(fake_ollama)
    reply = await core.handle(1, "ann", "What is a thread?")
    await core.aclose()
    assert reply.ok
    assert reply.text == canned_reply("What is a thread?")


async def test_keeps_history_across_turns(fake_ollama: FakeOllama) -> None:
    core = make_core(fake_ollama)
    await core.handle(1, "ann", "first")
    await core.handle(1, "bob", "second")
    await core.aclose()
    assert core.history(1) == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": canned_reply("first")},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": canned_reply("second")},
    ]
    assert core.history(2) == []


async def test_history_keeps_the_newest_messages(fake_ollama: FakeOllama) -> None:
    core = make_core(fake_ollama)
    for text in ("one", "two", "three"):
        await core.handle(1, "ann", text)
    await core.aclose()
    assert [m["content"] for m in core.history(1) if m["role"] == "user"] == ["two", "three"]


async def test_reset_forgets_the_channel(fake_ollama: FakeOllama) -> None:
    core = make_core(fake_ollama)
    await core.handle(1, "ann", "first")
    await core.handle(2, "ann", "other")
    await core.reset(1)
    await core.aclose()
    assert core.history(1) == []
    assert len(core.history(2)) == 2


async def test_stream_yields_the_reply_and_remembers_it(fake_ollama: FakeOllama) -> None:
    core = make_core(fake_ollama)
    text = await collect(core, 1, "hello")
    await core.aclose()
    assert text == canned_reply("hello")
    assert core.history(1)[-1] == {"role": "assistant", "content": text}


async def test_failure_is_answered_logged_and_counted(
    fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ollama.fault = Fault.SERVER_ERROR
    core = make_core(fake_ollama)
    reply = await core.handle(1, "ann", "hello")
    await core.aclose()
    assert reply.error is LLMErrorKind.SERVER_ERROR
    assert not reply.ok
    assert "HTTP 500" in reply.text
    assert core.errors == {LLMErrorKind.SERVER_ERROR: 1}
    assert "LLM call failed" in caplog.text
    assert core.history(1) == []


async def test_stream_failure_ends_with_the_explanation(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.DISCONNECT
    core = make_core(fake_ollama)
    text = await collect(core, 1, "hello")
    await core.aclose()
    assert text.endswith("\n\nThe connection to the model broke off mid-reply; please try again.")
    assert canned_reply("hello").startswith(text.split("\n\n")[0])
    assert core.errors == {LLMErrorKind.DISCONNECTED: 1}
    assert core.history(1) == []


async def test_timeout_is_answered(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.HANG
    core = make_core(fake_ollama, timeout=0.2)
    reply = await core.handle(1, "ann", "hello")
    await core.aclose()
    assert reply.error is LLMErrorKind.TIMEOUT


async def test_every_message_costs_one_llm_call(fake_ollama: FakeOllama) -> None:
    # The phase-1 core has no deduplication: the botperf-based core will change this number.
    core = make_core(fake_ollama)
    for channel in range(3):
        await core.handle(channel, "ann", "same question")
    await core.aclose()
    assert fake_ollama.count("/api/chat") == 3


def test_rejects_a_history_shorter_than_one_exchange() -> None:
    with pytest.raises(ValueError, match="max_messages must be >= 2"):
        PlainCore(OllamaChat(), max_messages=1)
