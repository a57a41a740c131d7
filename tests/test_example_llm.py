"""The example's Ollama client, against the fake Ollama over real HTTP, on asyncio and trio."""

from __future__ import annotations

import socket

import anyio
import pytest

from examples.chatcore.fake_ollama import FakeOllama, Fault, canned_reply, tokenize
from examples.chatcore.llm import ChatResult, LLMError, LLMErrorKind, OllamaChat

pytestmark = pytest.mark.anyio

QUESTION = "How do I reverse a list in Python?"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]


async def fails(llm: OllamaChat) -> LLMError:
    with pytest.raises(LLMError) as caught:
        await llm.chat(MESSAGES)
    return caught.value


async def test_stream_yields_the_reply_in_pieces(fake_ollama: FakeOllama) -> None:
    async with OllamaChat(host=fake_ollama.url) as llm, llm.stream(MESSAGES) as stream:
        pieces = [piece async for piece in stream]
    assert pieces == tokenize(canned_reply(QUESTION))
    assert stream.result.text == "".join(pieces)


async def test_result_carries_ollamas_numbers(fake_ollama: FakeOllama) -> None:
    async with OllamaChat(host=fake_ollama.url) as llm:
        result = await llm.chat(MESSAGES)
    assert result.text == canned_reply(QUESTION)
    assert result.model == "llama3.2"
    assert result.done_reason == "stop"
    assert result.eval_count == len(tokenize(result.text))
    assert result.prompt_eval_count is not None
    assert result.prompt_eval_count > 0
    durations = (result.total_duration, result.load_duration, result.eval_duration)
    assert all(isinstance(ns, int) and ns > 0 for ns in durations)
    assert result.time_to_first_token is not None
    assert 0 < result.time_to_first_token <= result.latency


async def test_tokens_per_second_is_eval_count_over_eval_duration(
    fake_ollama: FakeOllama,
) -> None:
    async with OllamaChat(host=fake_ollama.url) as llm:
        result = await llm.chat(MESSAGES)
    assert result.eval_count is not None
    assert result.eval_duration is not None
    assert result.tokens_per_second == result.eval_count / result.eval_duration * 1e9


def test_tokens_per_second_is_none_without_numbers() -> None:
    assert ChatResult("x", "m", latency=0.1, time_to_first_token=None).tokens_per_second is None


async def test_host_and_model_come_from_the_environment(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    monkeypatch.setenv("OLLAMA_MODEL", "llama3.2:latest")
    async with OllamaChat() as llm:
        await llm.chat(MESSAGES)
    assert (llm.host, llm.model) == (fake_ollama.url, "llama3.2:latest")
    assert fake_ollama.count("/api/chat", "llama3.2") == 1


async def test_missing_model_says_how_to_pull_it(fake_ollama: FakeOllama) -> None:
    async with OllamaChat(host=fake_ollama.url, model="mistral") as llm:
        error = await fails(llm)
    assert error.kind is LLMErrorKind.MODEL_MISSING
    assert error.status_code == 404
    assert error.user_message == (
        "The model 'mistral' is not installed on the Ollama server (run `ollama pull mistral`)."
    )
    assert fake_ollama.count("/api/chat", "mistral") == 1


async def test_server_error_is_reported_with_its_status(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.SERVER_ERROR
    async with OllamaChat(host=fake_ollama.url) as llm:
        error = await fails(llm)
    assert error.kind is LLMErrorKind.SERVER_ERROR
    assert error.status_code == 500
    assert "HTTP 500" in error.user_message
    assert "llama runner" in error.detail


async def test_hanging_server_times_out(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.HANG
    # Long enough for the request to reach the server on a busy machine (CI runs the suite
    # on several Pythons at once), which the count below checks.
    async with OllamaChat(host=fake_ollama.url, timeout=1.0) as llm:
        error = await fails(llm)
    assert error.kind is LLMErrorKind.TIMEOUT
    assert error.user_message == "The model took more than 1 s to answer; please try again."
    assert fake_ollama.count("/api/chat") == 1


async def test_slow_stream_times_out_as_a_whole(fake_ollama: FakeOllama) -> None:
    # Every token arrives well within the timeout; the whole reply does not.
    fake_ollama.token_delay = 0.05
    async with OllamaChat(host=fake_ollama.url, timeout=0.3) as llm:
        error = await fails(llm)
    assert error.kind is LLMErrorKind.TIMEOUT


async def test_connection_closed_mid_stream(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.DISCONNECT
    async with OllamaChat(host=fake_ollama.url) as llm, llm.stream(MESSAGES) as stream:
        with pytest.raises(LLMError) as caught:
            async for _ in stream:
                pass
    assert caught.value.kind is LLMErrorKind.DISCONNECTED
    assert stream.text  # the pieces before the break were delivered
    assert canned_reply(QUESTION).startswith(stream.text)


async def test_error_line_mid_stream(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.ERROR_LINE
    async with OllamaChat(host=fake_ollama.url) as llm:
        error = await fails(llm)
    assert error.kind is LLMErrorKind.STREAM_ERROR
    assert "unexpected EOF" in error.detail
    assert error.status_code is None


async def test_ollama_down_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with OllamaChat(host=f"http://127.0.0.1:{port}") as llm:
        error = await fails(llm)
    assert error.kind is LLMErrorKind.UNAVAILABLE
    assert "is Ollama running?" in error.user_message


async def test_client_works_again_after_a_failure(fake_ollama: FakeOllama) -> None:
    async with OllamaChat(host=fake_ollama.url) as llm:
        fake_ollama.fault = Fault.DISCONNECT
        await fails(llm)
        fake_ollama.fault = None
        result = await llm.chat(MESSAGES)
    assert result.text == canned_reply(QUESTION)


async def test_cancelled_stream_closes_and_client_stays_usable(fake_ollama: FakeOllama) -> None:
    fake_ollama.token_delay = 0.01
    async with OllamaChat(host=fake_ollama.url) as llm:
        with anyio.CancelScope() as scope:
            async with llm.stream(MESSAGES) as stream:
                async for _ in stream:
                    scope.cancel()
        assert scope.cancelled_caught
        fake_ollama.token_delay = 0.001
        result = await llm.chat(MESSAGES)
    assert result.text == canned_reply(QUESTION)


async def test_result_before_the_end_is_an_error(fake_ollama: FakeOllama) -> None:
    async with OllamaChat(host=fake_ollama.url) as llm, llm.stream(MESSAGES) as stream:
        with pytest.raises(RuntimeError, match="not finished"):
            _ = stream.result


def test_rejects_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        OllamaChat(timeout=0)


async def test_failed_stream_is_not_restarted(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.SERVER_ERROR
    async with OllamaChat(host=fake_ollama.url) as llm, llm.stream(MESSAGES) as stream:
        with pytest.raises(LLMError):
            await stream.__anext__()
        assert [piece async for piece in stream] == []
    assert fake_ollama.count("/api/chat") == 1
