"""Checked by ``mypy --strict``: the Deduplicator's typed API is a contract."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from botperf import DedupCancelledError, Deduplicator, DedupStats, deduplicate

dedup = Deduplicator(ttl=2.0, max_cached=100, cancel_abandoned=False)
assert_type(dedup.in_flight, int)
assert_type(dedup.stats, DedupStats)
assert_type(dedup.stats.calls, int)
assert_type(dedup.forget("key"), None)


async def ask_llm(prompt: str, model: str) -> str:
    return prompt


async def use_run() -> None:
    assert_type(await dedup.run("key", ask_llm, "hi", "small"), str)
    assert_type(await dedup.run(("k", 1), ask_llm, "hi", model="small"), str)
    await dedup.run("key", ask_llm, "hi", 3)  # type: ignore[arg-type]
    await dedup.run("key", ask_llm, "hi")  # type: ignore[call-arg]


@deduplicate(key=lambda prompt, model: (model, prompt.strip().casefold()), ttl=2.0)
async def cached_ask(prompt: str, model: str) -> str:
    return prompt


@deduplicate()
async def lookup(user_id: int, *, fresh: bool = False) -> dict[str, int]:
    return {"id": user_id}


async def use_decorated() -> None:
    assert_type(await cached_ask("hi", "small"), str)
    call = cached_ask("hi", "small")
    assert_type(call, Coroutine[Any, Any, str])  # type: ignore[unused-coroutine]
    await call
    assert_type(await lookup(1, fresh=True), dict[str, int])
    assert_type(cached_ask.deduplicator, Deduplicator)
    await cached_ask("hi")  # type: ignore[call-arg]
    await lookup("one")  # type: ignore[arg-type]


assert_type(DedupCancelledError("key").key, object)
