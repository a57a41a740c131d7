"""Checked by ``mypy --strict``: botperf.redis's typed API is a contract."""

from __future__ import annotations

import redis
from redis.asyncio import Redis
from typing_extensions import assert_type

from botperf import BatchMetricsWriter, HistoryStats, Message, MetricsSink
from botperf.redis import (
    Codec,
    JsonCodec,
    RedisDeduplicator,
    RedisDedupStats,
    RedisHistoryStore,
    RedisStreamSink,
    deduplicate,
)


def archive(channel: int, messages: tuple[Message, ...]) -> None:
    print(channel, len(messages))


async def archive_later(channel: str, messages: tuple[Message, ...]) -> None:
    print(channel, len(messages))


async def main() -> None:
    store: RedisHistoryStore[int] = RedisHistoryStore(
        "redis://localhost:6379/0",
        prefix="bot:history:",
        timeout=2.0,
        max_channels=10,
        max_messages=5,
        max_tokens=100,
        count_tokens=len,
        system_prompt="Be brief.",
        on_evict=archive,
    )
    assert_type(await store.append(1, "user", "hi", author="ann"), None)
    assert_type(await store.get(1), tuple[Message, ...])
    assert_type(await store.as_messages(1), list[dict[str, str]])
    assert_type(await store.clear(1), None)
    assert_type(await store.channels(), list[int])
    assert_type(await store.size(), int)
    assert_type(await store.contains(1), bool)
    assert_type(await store.stats(), HistoryStats)
    assert_type(await store.aclose(), None)

    async with RedisHistoryStore[str](
        Redis(), on_evict=archive_later, trim="stable", stable_fill=0.6, on_trim=archive_later
    ) as named:
        assert_type(named, RedisHistoryStore[str])
        assert_type(await named.channels(), list[str])
        assert_type(await named.set_summary("general", "Earlier: hello."), bool)
        assert_type(await named.get_summary("general"), str | None)

    untyped = RedisHistoryStore(Redis())
    assert_type(untyped, RedisHistoryStore[int | str])

    await store.append("general", "user", "hi")  # type: ignore[arg-type]
    RedisHistoryStore[tuple[int, int]](Redis())  # type: ignore[type-var]


sink = RedisStreamSink(
    "redis://localhost:6379/0",
    stream="bot:metrics",
    maxlen=10_000,
    approximate=False,
    timeout=2.0,
    encoder="json",
)
shared: MetricsSink = sink
assert_type(sink.stream, str)
assert_type(sink.repr_values, int)
assert_type(sink.write_batch([{"ts": 1.0, "event": "tick"}]), None)
assert_type(RedisStreamSink(redis.Redis()).close(), None)
writer = BatchMetricsWriter(sink, max_batch=50)
RedisStreamSink(Redis())  # type: ignore[arg-type]


async def ask_llm(prompt: str, *, model: str) -> str:
    return f"{model}: {prompt}"


async def run_deduplicated() -> None:
    codec: Codec = JsonCodec()
    async with RedisDeduplicator(
        "redis://localhost:6379/0",
        prefix="bot:dedup:",
        ttl=2.0,
        codec=codec,
        lock_ttl=10.0,
        timeout=2.0,
        cancel_abandoned=False,
    ) as dedup:
        assert_type(dedup, RedisDeduplicator)
        assert_type(await dedup.run(("llama", "hi"), ask_llm, "hi", model="llama"), str)
        assert_type(dedup.stats, RedisDedupStats)
        assert_type(dedup.stats.takeovers, int)
        assert_type(dedup.in_flight, int)
        assert_type(await dedup.forget(("llama", "hi")), None)
        await dedup.run("key", ask_llm, 42, model="llama")  # type: ignore[arg-type]


@deduplicate(Redis(), key=lambda prompt, model: (model, prompt.casefold()), ttl=2.0)
async def ask_shared(prompt: str, *, model: str = "llama3") -> list[str]:
    return [model, prompt]


@deduplicate(
    "redis://localhost:6379/0",
    prefix="bot:dedup:",
    codec=JsonCodec(),
    lock_ttl=10.0,
    timeout=2.0,
    cancel_abandoned=False,
)
async def count(tags: tuple[str, ...]) -> int:
    return len(tags)


async def decorated() -> None:
    assert_type(await ask_shared("hi"), list[str])
    assert_type(await ask_shared("hi", model="phi"), list[str])
    assert_type(await count(("a", "b")), int)
    assert_type(ask_shared.deduplicator, RedisDeduplicator)
    assert_type(ask_shared.deduplicator.stats, RedisDedupStats)
    assert_type(ask_shared.deduplicator.prefix, str)
    assert_type(await count.deduplicator.forget(((("a",),),)), None)
    await ask_shared(42)  # type: ignore[arg-type]
    await ask_shared("hi", "phi")  # type: ignore[call-arg]
    await count(["a"])  # type: ignore[arg-type]
