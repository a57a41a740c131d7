"""The example's fake Ollama speaks Ollama's REST API, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time

import httpx
import ollama
import pytest

from examples.chatcore.fake_ollama import FakeOllama, Fault, canned_reply, tokenize

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
