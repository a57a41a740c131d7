"""Checked by ``mypy --strict``: HistoryStore's typed API is a contract."""

from __future__ import annotations

from collections.abc import Hashable

from typing_extensions import assert_type

from botperf import HistoryStats, HistoryStore, Message, approximate_tokens


def archive(channel: int, messages: tuple[Message, ...]) -> None:
    print(channel, len(messages))


store: HistoryStore[int] = HistoryStore(
    max_channels=10,
    max_messages=5,
    max_tokens=100,
    count_tokens=approximate_tokens,
    system_prompt="Be brief.",
    on_evict=archive,
)
assert_type(store.append(1, "user", "hi", author="ann"), None)
assert_type(store.get(1), tuple[Message, ...])
assert_type(store.as_messages(1), list[dict[str, str]])
assert_type(store.clear(1), None)
assert_type(store.channels(), list[int])
assert_type(store.stats, HistoryStats)
assert_type(store.stats.hits, int)
assert_type(len(store), int)
assert_type(1 in store, bool)
assert_type(store.dump("history.json"), None)
assert_type(HistoryStore[int].load("history.json", max_channels=10), HistoryStore[int])

message = store.get(1)[0]
assert_type(message.role, str)
assert_type(message.content, str)
assert_type(message.author, str | None)

untyped = HistoryStore()
assert_type(untyped, HistoryStore[Hashable])
assert_type(untyped.channels(), list[Hashable])
assert_type(HistoryStore.load("history.json"), HistoryStore[Hashable])
assert_type(approximate_tokens("text"), int)

store.append("general", "user", "hi")  # type: ignore[arg-type]

cached: HistoryStore[int] = HistoryStore(
    max_tokens=2000,
    system_prompt="Be brief.",
    trim="stable",
    stable_fill=0.5,
    message_overhead=4,
    on_trim=archive,
)
assert_type(cached.set_summary(1, "Earlier: greetings."), bool)
assert_type(cached.set_summary(1, None), bool)
assert_type(cached.get_summary(1), str | None)
assert_type(cached.stats.trim_errors, int)
HistoryStore(trim="fixed")  # type: ignore[arg-type]
