"""Checked by ``mypy --strict``: the shared streams' typed API is a contract."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from typing_extensions import assert_type

from botperf import Deduplicator, SharedStream, StreamTooLongError, deduplicate

dedup = Deduplicator(ttl=2.0, max_chunks=5_000)


async def reply(prompt: str, model: str) -> AsyncIterator[str]:
    yield prompt


async def use_stream() -> None:
    stream = dedup.stream(("m", "hi"), reply, "hi", "small")
    assert_type(stream, SharedStream[str])
    async for chunk in stream:
        assert_type(chunk, str)
    assert_type(await stream.__anext__(), str)
    assert_type(await stream.aclose(), None)
    async with contextlib.aclosing(dedup.stream("key", reply, "hi", model="small")) as closing:
        assert_type(closing, SharedStream[str])
    iterator: AsyncIterator[str] = dedup.stream("key", reply, "hi", "small")
    assert_type(iterator, AsyncIterator[str])
    dedup.stream("key", reply, "hi", 3)  # type: ignore[arg-type]
    dedup.stream("key", reply, "hi")  # type: ignore[call-arg]


@deduplicate(key=lambda prompt, model: (model, prompt.casefold()), ttl=2.0, max_chunks=100)
async def shared_reply(prompt: str, model: str) -> AsyncIterator[str]:
    yield prompt


@deduplicate()
async def words(text: str, *, upper: bool = False) -> AsyncIterator[str]:
    for word in text.split():
        yield word.upper() if upper else word


async def use_decorated() -> None:
    assert_type(shared_reply("hi", "small"), SharedStream[str])
    assert_type(words("a b", upper=True), SharedStream[str])
    assert_type(shared_reply.deduplicator, Deduplicator)
    as_callable: Callable[[str, str], AsyncIterator[str]] = shared_reply
    assert_type(as_callable("hi", "small"), AsyncIterator[str])
    async for word in words("a b"):
        assert_type(word, str)
    shared_reply("hi")  # type: ignore[call-arg]
    words(1)  # type: ignore[arg-type]


assert_type(StreamTooLongError("key", 10).max_chunks, int)
assert_type(StreamTooLongError("key", 10).key, object)
