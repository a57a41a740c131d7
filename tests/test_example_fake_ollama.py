"""The example's fake Ollama speaks Ollama's REST API, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time

import httpx
import ollama
import pytest

from examples.chatcore.fake_ollama import (
    FakeOllama,
    Fault,
    canned_reply,
    prompt_tokens,
    tokenize,
)

USER = [{"role": "user", "content": "What is an LRU cache?"}]
STATS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def test_non_streaming_chat_has_ollamas_fields(fake_ollama: FakeOllama) -> None:
    body = {"model": "llama3.2", "messages": USER, "stream": False}
    response = httpx.post(f"{fake_ollama.url}/api/chat", json=body)
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"model", "created_at", "message", "done", "done_reason", *STATS}
    assert data["message"] == {"role": "assistant", "content": canned_reply(USER[0]["content"])}
    assert data["done"] is True
    assert data["done_reason"] == "stop"
    assert all(isinstance(data[key], int) and data[key] > 0 for key in STATS)


def test_chat_streams_ndjson_by_default(fake_ollama: FakeOllama) -> None:
    body = {"model": "llama3.2", "messages": USER}
    with httpx.stream("POST", f"{fake_ollama.url}/api/chat", json=body) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *chunks, last = lines
    assert all(chunk["done"] is False for chunk in chunks)
    assert "".join(c["message"]["content"] for c in chunks) == canned_reply(USER[0]["content"])
    assert last["done"] is True
    assert last["message"] == {"role": "assistant", "content": ""}
    assert last["eval_count"] == len(chunks)
    assert set(last) >= STATS


def test_nanosecond_durations_add_up(fake_ollama: FakeOllama) -> None:
    body = {"model": "llama3.2", "messages": USER, "stream": False}
    data = httpx.post(f"{fake_ollama.url}/api/chat", json=body).json()
    parts = data["load_duration"] + data["prompt_eval_duration"] + data["eval_duration"]
    assert parts <= data["total_duration"]


SYSTEM = {"role": "system", "content": "Be brief."}


def chat(server: FakeOllama, messages: list[dict[str, str]]) -> int:
    """Send a non-streaming chat; return its prompt_eval_count."""
    body = {"model": "llama3.2", "messages": messages, "stream": False}
    data = httpx.post(f"{server.url}/api/chat", json=body).json()
    assert isinstance(data["prompt_eval_count"], int)
    return data["prompt_eval_count"]


def test_prompt_tokens_render_each_message_and_the_reply_start() -> None:
    tokens = prompt_tokens([SYSTEM, {"role": "user", "content": "Hi there"}])
    assert tokens == [
        "<|im_start|>", "system", "\n", "Be ", "brief.", "<|im_end|>",
        "<|im_start|>", "user", "\n", "Hi ", "there", "<|im_end|>",
        "<|im_start|>", "assistant", "\n",
    ]  # fmt: skip


def test_a_new_prompt_is_evaluated_whole(fake_ollama: FakeOllama) -> None:
    messages = [SYSTEM, *USER]
    assert chat(fake_ollama, messages) == len(prompt_tokens(messages))
    assert fake_ollama.prompt_evals() == [len(prompt_tokens(messages))]


def test_a_prompt_extending_the_last_one_evaluates_only_the_new_tokens(
    fake_ollama: FakeOllama,
) -> None:
    first = [SYSTEM, *USER]
    chat(fake_ollama, first)
    reply = {"role": "assistant", "content": canned_reply(USER[0]["content"])}
    second = [*first, reply, {"role": "user", "content": "And a TTL cache?"}]
    # The cached reply is the prefix too: only the new question and the reply's start.
    new = prompt_tokens([{"role": "user", "content": "And a TTL cache?"}])
    assert chat(fake_ollama, second) == len(new)


def test_a_prompt_changed_after_the_system_prompt_is_evaluated_from_there(
    fake_ollama: FakeOllama,
) -> None:
    question = {"role": "user", "content": "one two three"}
    chat(fake_ollama, [SYSTEM, question])
    summary = {"role": "system", "content": "Earlier: greetings."}
    changed = [SYSTEM, summary, question]
    # Cached: the system message (6 tokens) and the next message's <|im_start|>.
    assert chat(fake_ollama, changed) == len(prompt_tokens(changed)) - 7 == 15


def test_the_same_prompt_again_evaluates_one_token(fake_ollama: FakeOllama) -> None:
    messages = [SYSTEM, *USER]
    chat(fake_ollama, messages)
    # The cache holds the prompt and the reply: the prompt is all cached, but the model
    # evaluates its last token to start the reply.
    assert chat(fake_ollama, messages) == 1


def test_each_slot_keeps_its_own_conversation() -> None:
    first = [SYSTEM, {"role": "user", "content": "alpha"}]
    second = [{"role": "system", "content": "Other."}, {"role": "user", "content": "beta"}]
    with FakeOllama(time_to_first_token=0, token_delay=0, cache_slots=2) as server:
        chat(server, first)
        chat(server, second)
        assert chat(server, first) == 1
        assert chat(server, second) == 1
    with FakeOllama(time_to_first_token=0, token_delay=0, cache_slots=1) as server:
        chat(server, first)
        chat(server, second)  # takes the only slot: "<|im_start|> system \n" is shared
        assert chat(server, first) == len(prompt_tokens(first)) - 3 == 11


def test_a_diverging_prompt_keeps_the_slot_it_shared_a_prefix_with() -> None:
    long = [SYSTEM, {"role": "user", "content": "a long conversation"}]
    other = [SYSTEM, {"role": "user", "content": "something else"}]
    with FakeOllama(time_to_first_token=0, token_delay=0, cache_slots=2) as server:
        chat(server, long)
        # Shared: the system message and "<|im_start|> user \n" (9 tokens).
        assert chat(server, other) == len(prompt_tokens(other)) - 9 == 6
        assert chat(server, long) == 1  # its slot was copied from, not overwritten


def test_clear_cache_forgets_every_prompt(fake_ollama: FakeOllama) -> None:
    messages = [SYSTEM, *USER]
    chat(fake_ollama, messages)
    fake_ollama.clear_cache()
    assert chat(fake_ollama, messages) == len(prompt_tokens(messages))
    fake_ollama.reset_counts()
    assert fake_ollama.prompt_evals() == []


def test_rejects_no_cache_slot() -> None:
    with pytest.raises(ValueError, match="cache_slots must be >= 1, got 0"):
        FakeOllama(cache_slots=0)


def test_tags_and_version(fake_ollama: FakeOllama) -> None:
    tags = httpx.get(f"{fake_ollama.url}/api/tags").json()
    assert [model["name"] for model in tags["models"]] == ["llama3.2:latest"]
    assert tags["models"][0]["details"]["family"] == "llama"
    assert "version" in httpx.get(f"{fake_ollama.url}/api/version").json()


def test_unknown_model_gets_ollamas_404(fake_ollama: FakeOllama) -> None:
    body = {"model": "mistral", "messages": USER}
    response = httpx.post(f"{fake_ollama.url}/api/chat", json=body)
    assert response.status_code == 404
    assert response.json() == {"error": "model 'mistral' not found, try pulling it first"}


def test_server_error_fault_answers_500(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.SERVER_ERROR
    response = httpx.post(
        f"{fake_ollama.url}/api/chat", json={"model": "llama3.2", "messages": USER}
    )
    assert response.status_code == 500
    assert "error" in response.json()


def test_error_line_fault_sends_an_error_object_on_http_200(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.ERROR_LINE
    body = {"model": "llama3.2", "messages": USER}
    with httpx.stream("POST", f"{fake_ollama.url}/api/chat", json=body) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert set(lines[-1]) == {"error"}
    assert lines[0]["done"] is False


def test_disconnect_fault_cuts_the_body(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.DISCONNECT
    body = {"model": "llama3.2", "messages": USER}
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{fake_ollama.url}/api/chat", json=body) as response,
    ):
        for _ in response.iter_lines():
            pass


def test_hang_fault_never_answers(fake_ollama: FakeOllama) -> None:
    fake_ollama.fault = Fault.HANG
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{fake_ollama.url}/api/chat",
            json={"model": "llama3.2", "messages": USER},
            timeout=0.2,
        )


def test_pause_after_tokens_holds_a_stream_mid_reply(fake_ollama: FakeOllama) -> None:
    fake_ollama.pause(after_tokens=2)
    body = {"model": "llama3.2", "messages": USER}
    with httpx.stream("POST", f"{fake_ollama.url}/api/chat", json=body) as response:
        lines = response.iter_lines()
        held = [json.loads(next(lines)) for _ in range(2)]
        fake_ollama.resume()
        rest = [json.loads(line) for line in lines if line]
    tokens = tokenize(canned_reply(USER[0]["content"]))
    assert [chunk["message"]["content"] for chunk in held] == tokens[:2]
    assert [chunk["message"]["content"] for chunk in rest[:-1]] == tokens[2:]
    assert rest[-1]["done"] is True


def test_counts_a_client_hanging_up_mid_stream(fake_ollama: FakeOllama) -> None:
    fake_ollama.pause(after_tokens=2)
    body = {"model": "llama3.2", "messages": USER}
    with httpx.stream("POST", f"{fake_ollama.url}/api/chat", json=body) as response:
        lines = response.iter_lines()
        next(lines)
    assert fake_ollama.hangups() == 0  # held: it has not written since
    fake_ollama.resume()
    deadline = time.monotonic() + 10  # a safety net: the next writes fail at once
    while fake_ollama.hangups() == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert fake_ollama.hangups() == 1
    fake_ollama.reset_counts()
    assert fake_ollama.hangups() == 0


def test_pause_rejects_a_negative_token_count(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ValueError, match="after_tokens must be >= 0, got -1"):
        fake_ollama.pause(after_tokens=-1)


def test_counts_requests_per_path_and_model(fake_ollama: FakeOllama) -> None:
    for model in ("llama3.2", "llama3.2:latest", "mistral"):
        httpx.post(f"{fake_ollama.url}/api/chat", json={"model": model, "messages": USER})
    httpx.get(f"{fake_ollama.url}/api/tags")
    assert fake_ollama.count() == 4
    assert fake_ollama.count("/api/chat") == 3
    assert fake_ollama.count("/api/chat", "llama3.2") == 2
    assert fake_ollama.count(model="mistral:latest") == 1
    fake_ollama.reset_counts()
    assert fake_ollama.count() == 0


@pytest.mark.anyio
async def test_official_client_chats_streaming_and_not(fake_ollama: FakeOllama) -> None:
    client = ollama.AsyncClient(host=fake_ollama.url)
    try:
        whole = await client.chat(model="llama3.2", messages=USER)
        pieces = [
            part.message.content or ""
            async for part in await client.chat(model="llama3.2", messages=USER, stream=True)
        ]
        listed = await client.list()
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    assert whole.message.content == "".join(pieces) == canned_reply(USER[0]["content"])
    assert whole.eval_count == len(tokenize(canned_reply(USER[0]["content"])))
    assert [model.model for model in listed.models] == ["llama3.2:latest"]


def test_replies_are_deterministic_per_question() -> None:
    assert canned_reply("a?") == canned_reply("  a?  ")
    assert canned_reply("a?") != canned_reply("b?")
    assert "".join(tokenize(canned_reply("a?"))) == canned_reply("a?")


def test_replies_can_depend_on_the_whole_conversation() -> None:
    summarize = {"role": "user", "content": "Summarize the conversation above."}
    first = [{"role": "user", "content": "user: one"}, summarize]
    second = [{"role": "user", "content": "user: two"}, summarize]
    with FakeOllama(
        time_to_first_token=0, token_delay=0, reply_depends_on="conversation"
    ) as server:
        replies = [
            httpx.post(
                f"{server.url}/api/chat",
                json={"model": "llama3.2", "messages": messages, "stream": False},
            ).json()["message"]["content"]
            for messages in (first, second, first)
        ]
    assert replies[0] == replies[2] != replies[1]  # deterministic, but not per question
    assert replies[0] != canned_reply(summarize["content"])
    assert len(tokenize(replies[0])) == len(tokenize(replies[1]))


def test_rejects_an_unknown_reply_dependency() -> None:
    with pytest.raises(ValueError, match="reply_depends_on must be 'question' or 'conversation'"):
        FakeOllama(reply_depends_on="everything")  # type: ignore[arg-type]


def test_stop_releases_a_hung_request() -> None:
    server = FakeOllama().start()
    server.fault = Fault.HANG
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post(f"{server.url}/api/chat", json={"model": "llama3.2", "messages": USER})
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_rejects_negative_delays() -> None:
    with pytest.raises(ValueError, match=">= 0 seconds"):
        FakeOllama(token_delay=-1)
