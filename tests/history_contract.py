"""The behaviour any HistoryStore implementation must show, whatever holds the data.

A test module runs the contract against an implementation by subclassing the classes
below with a ``make_store`` fixture (and, for stores that write files, a
``load_store`` fixture):

    class TestInMemoryStore(HistoryContract):
        @pytest.fixture
        def make_store(self) -> StoreFactory:
            return HistoryStore

``make_store(**options)`` takes the ``HistoryStore`` keyword options;
``load_store(path, **options)`` is ``HistoryStore.load``.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from botperf import BotperfError, FileFormatError, InvalidOptionError, Message

StoreFactory = Callable[..., Any]
LoadFactory = Callable[..., Any]


def words(text: str) -> int:
    """A token counter easy to reason about in tests: one token per word."""
    return len(text.split())


class EvictionLog:
    """An on_evict callback recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Hashable, tuple[Message, ...]]] = []

    def __call__(self, channel: Hashable, messages: tuple[Message, ...]) -> None:
        self.calls.append((channel, messages))


class HistoryContract:
    """Behaviour of the store itself: order, recency, eviction, prompts, stats, errors."""

    #: Examples of each model run; a store a round trip away may run fewer.
    model_examples = 100

    def test_get_returns_appended_messages_oldest_first(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi", author="ann")
        store.append(1, "assistant", "hello")
        assert store.get(1) == (Message("user", "hi", "ann"), Message("assistant", "hello"))

    def test_get_of_unknown_channel_is_empty_and_creates_nothing(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store()
        assert store.get(1) == ()
        assert 1 not in store
        assert len(store) == 0

    def test_get_counts_hits_and_misses(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi")
        store.get(1)
        store.get(2)
        store.get(2)
        assert (store.stats.hits, store.stats.misses) == (1, 2)

    def test_channels_are_kept_apart(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "one")
        store.append("1", "user", "text one")
        assert [m.content for m in store.get(1)] == ["one"]
        assert [m.content for m in store.get("1")] == ["text one"]

    def test_oldest_messages_drop_off_beyond_max_messages(self, make_store: StoreFactory) -> None:
        store = make_store(max_messages=2)
        for content in ("a", "b", "c"):
            store.append(1, "user", content)
        assert [m.content for m in store.get(1)] == ["b", "c"]
        assert store.stats.messages == 2

    def test_least_recently_used_channel_is_evicted_beyond_max_channels(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store(max_channels=2)
        for channel in (1, 2, 3):
            store.append(channel, "user", "hi")
        assert store.channels() == [2, 3]
        assert store.stats.evictions == 1

    def test_get_marks_channel_most_recently_used(self, make_store: StoreFactory) -> None:
        store = make_store(max_channels=2)
        store.append(1, "user", "hi")
        store.append(2, "user", "hi")
        store.get(1)
        store.append(3, "user", "hi")
        assert store.channels() == [1, 3]

    def test_append_marks_channel_most_recently_used(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi")
        store.append(2, "user", "hi")
        store.append(1, "user", "again")
        assert store.channels() == [2, 1]

    def test_as_messages_marks_channel_most_recently_used(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi")
        store.append(2, "user", "hi")
        store.as_messages(1)
        assert store.channels() == [2, 1]

    def test_contains_does_not_change_recency(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi")
        store.append(2, "user", "hi")
        assert 1 in store
        assert 3 not in store
        assert store.channels() == [1, 2]
        assert (store.stats.hits, store.stats.misses) == (0, 0)

    def test_contains_is_false_for_an_unhashable_key(self, make_store: StoreFactory) -> None:
        assert [1] not in make_store()

    def test_len_counts_channels(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "a")
        store.append(1, "user", "b")
        store.append(2, "user", "c")
        assert len(store) == 2

    def test_clear_removes_channel_and_history(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi")
        store.clear(1)
        assert 1 not in store
        assert store.get(1) == ()
        assert store.stats.messages == 0

    def test_clear_of_unknown_channel_does_nothing(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi")
        store.clear(2)
        assert store.channels() == [1]

    def test_clear_does_not_call_on_evict_or_count_an_eviction(
        self, make_store: StoreFactory
    ) -> None:
        log = EvictionLog()
        store = make_store(on_evict=log)
        store.append(1, "user", "hi")
        store.clear(1)
        assert log.calls == []
        assert store.stats.evictions == 0

    def test_on_evict_gets_the_evicted_history_once(self, make_store: StoreFactory) -> None:
        log = EvictionLog()
        store = make_store(max_channels=1, on_evict=log)
        store.append(1, "user", "a", author="ann")
        store.append(1, "assistant", "b")
        store.append(2, "user", "c")
        store.append(2, "user", "d")
        assert log.calls == [(1, (Message("user", "a", "ann"), Message("assistant", "b")))]

    def test_failing_on_evict_is_logged_counted_and_leaves_store_consistent(
        self, make_store: StoreFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        def explode(channel: Hashable, messages: tuple[Message, ...]) -> None:
            raise RuntimeError("boom")

        store = make_store(max_channels=1, on_evict=explode)
        store.append(1, "user", "a")
        with caplog.at_level(logging.ERROR, logger="botperf"):
            store.append(2, "user", "b")
        assert "on_evict" in caplog.text
        assert "boom" in caplog.text
        assert store.stats.evict_errors == 1
        assert store.channels() == [2]
        assert store.get(2) == (Message("user", "b"),)

    def test_as_messages_without_budget_gives_every_message(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "hi", author="ann")
        store.append(1, "assistant", "hello")
        assert store.as_messages(1) == [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]

    def test_as_messages_puts_system_prompt_first(self, make_store: StoreFactory) -> None:
        store = make_store(system_prompt="Be brief.")
        store.append(1, "user", "hi")
        assert store.as_messages(1) == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]

    def test_as_messages_of_unknown_channel_is_the_system_prompt_alone(
        self, make_store: StoreFactory
    ) -> None:
        assert make_store(system_prompt="Be brief.").as_messages(1) == [
            {"role": "system", "content": "Be brief."}
        ]
        store = make_store()
        assert store.as_messages(1) == []
        assert 1 not in store
        assert store.stats.misses == 1

    def test_as_messages_drops_oldest_messages_to_fit_the_budget(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store(max_tokens=6, count_tokens=words, system_prompt="be brief")
        for content in ("one two", "three four", "five six", "seven"):
            store.append(1, "user", content)
        # 2 system tokens + "five six" (2) + "seven" (1) = 5; adding "three four" makes 7.
        assert [m["content"] for m in store.as_messages(1)] == ["be brief", "five six", "seven"]

    def test_as_messages_fills_the_budget_exactly(self, make_store: StoreFactory) -> None:
        store = make_store(max_tokens=4, count_tokens=words)
        for content in ("a", "b c", "d e"):
            store.append(1, "user", content)
        assert [m["content"] for m in store.as_messages(1)] == ["b c", "d e"]

    def test_as_messages_keeps_newest_message_over_budget(self, make_store: StoreFactory) -> None:
        store = make_store(max_tokens=3, count_tokens=words, system_prompt="be brief")
        store.append(1, "user", "short")
        store.append(1, "user", "a message far too long")
        assert store.as_messages(1) == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "a message far too long"},
        ]
        assert store.stats.over_budget == 1

    def test_as_messages_leaves_the_history_unchanged(self, make_store: StoreFactory) -> None:
        store = make_store(max_tokens=2, count_tokens=words)
        store.append(1, "user", "one two")
        store.append(1, "user", "three")
        prompt = store.as_messages(1)
        prompt[0]["content"] = "changed"
        prompt.clear()
        assert [m.content for m in store.get(1)] == ["one two", "three"]

    def test_system_prompt_filling_the_budget_is_refused(self, make_store: StoreFactory) -> None:
        with pytest.raises(InvalidOptionError, match="max_tokens must be more than"):
            make_store(max_tokens=2, count_tokens=words, system_prompt="be brief")

    def test_stats_count_channels_and_messages(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "a")
        store.append(1, "user", "b")
        store.append(2, "user", "c")
        assert (store.stats.channels, store.stats.messages) == (2, 3)

    @pytest.mark.parametrize(
        ("role", "content", "author"),
        [(None, "hi", None), ("user", b"hi", None), ("user", "hi", 42), (1, "hi", None)],
    )
    def test_non_string_fields_are_refused(
        self, make_store: StoreFactory, role: object, content: object, author: object
    ) -> None:
        store = make_store()
        with pytest.raises(TypeError, match="must be a"):
            store.append(1, role, content, author=author)
        assert len(store) == 0

    def test_empty_role_is_refused(self, make_store: StoreFactory) -> None:
        with pytest.raises(ValueError, match="role must be a non-empty str"):
            make_store().append(1, "", "hi")

    def test_unhashable_channel_is_refused(self, make_store: StoreFactory) -> None:
        store = make_store()
        with pytest.raises(TypeError, match="channel must be a hashable key"):
            store.append([1], "user", "hi")
        with pytest.raises(TypeError, match="channel must be a hashable key"):
            store.get([1])
        with pytest.raises(TypeError, match="channel must be a hashable key"):
            store.as_messages([1])
        with pytest.raises(TypeError, match="channel must be a hashable key"):
            store.clear([1])

    @pytest.mark.parametrize("option", ["max_channels", "max_messages", "max_tokens"])
    @pytest.mark.parametrize("value", [0, -1])
    def test_limits_below_one_are_refused(
        self, make_store: StoreFactory, option: str, value: int
    ) -> None:
        with pytest.raises(InvalidOptionError, match=f"{option} must be an int of at least 1"):
            make_store(**{option: value})

    @pytest.mark.parametrize("option", ["max_channels", "max_messages", "max_tokens"])
    @pytest.mark.parametrize("value", [2.5, "3", True])
    def test_non_int_limits_are_refused(
        self, make_store: StoreFactory, option: str, value: object
    ) -> None:
        with pytest.raises(InvalidOptionError, match=f"{option} must be an int of at least 1"):
            make_store(**{option: value})

    @pytest.mark.parametrize("option", ["count_tokens", "on_evict"])
    def test_non_callable_callbacks_are_refused(
        self, make_store: StoreFactory, option: str
    ) -> None:
        with pytest.raises(InvalidOptionError, match=f"{option} must be a callable"):
            make_store(**{option: "len"})

    def test_non_string_system_prompt_is_refused(self, make_store: StoreFactory) -> None:
        with pytest.raises(InvalidOptionError, match="system_prompt must be a str"):
            make_store(system_prompt=["Be brief."])

    def test_option_errors_name_the_store_and_the_option(self, make_store: StoreFactory) -> None:
        with pytest.raises(InvalidOptionError) as info:
            make_store(max_channels=0)
        owner = info.value.owner  # the class the store is: HistoryStore, RedisHistoryStore
        assert owner.endswith("HistoryStore")
        assert str(info.value) == (
            f"{owner}(max_channels=0): max_channels must be an int of at least 1"
        )
        assert (info.value.option, info.value.value) == ("max_channels", 0)

    @pytest.mark.parametrize("count", [-1, 1.5, None])
    def test_bad_token_count_is_refused_and_store_unchanged(
        self, make_store: StoreFactory, count: object
    ) -> None:
        store = make_store(max_tokens=10, count_tokens=lambda text: count)
        with pytest.raises(ValueError, match=r"count_tokens\(content\) must be"):
            store.append(1, "user", "hi")
        assert len(store) == 0

    def test_errors_are_botperf_errors(self, make_store: StoreFactory) -> None:
        with pytest.raises(BotperfError):
            make_store().append(1, "", "hi")

    # Prompt caching (issue 17): trim modes, answers never first, on_trim, summaries.

    def test_stable_prompt_grows_by_appending_while_it_fits(self, make_store: StoreFactory) -> None:
        store = make_store(trim="stable", max_tokens=10, count_tokens=words, system_prompt="s")
        prompts = []
        for role, content in [("user", "a b"), ("assistant", "c d"), ("user", "e f")]:
            store.append(1, role, content)
            prompts.append(store.as_messages(1))
        store.append(1, "assistant", "g h")
        prompts.append(store.as_messages(1))
        for before, after in itertools.pairwise(prompts):
            assert after[: len(before)] == before
        assert [m["content"] for m in prompts[-1]] == ["s", "a b", "c d", "e f", "g h"]

    def test_stable_window_is_trimmed_to_the_fill_once_the_budget_is_passed(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store(trim="stable", max_tokens=10, count_tokens=words, stable_fill=0.5)
        turns = [("user", "a b"), ("assistant", "c d"), ("user", "e f"), ("assistant", "g h")]
        for role, content in [*turns, ("user", "i j")]:
            store.append(1, role, content)
        assert len(store.as_messages(1)) == 5  # 10 tokens: the whole budget
        store.append(1, "assistant", "k l")  # 12 tokens: trimmed to at most 5
        assert store.as_messages(1) == [
            {"role": "user", "content": "i j"},
            {"role": "assistant", "content": "k l"},
        ]
        store.append(1, "user", "m n")
        assert [m["content"] for m in store.as_messages(1)] == ["i j", "k l", "m n"]

    def test_sliding_window_moves_on_every_turn_past_the_budget(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store(max_tokens=10, count_tokens=words)
        turns = [("user", "a b"), ("assistant", "c d"), ("user", "e f"), ("assistant", "g h")]
        for role, content in [*turns, ("user", "i j"), ("assistant", "k l")]:
            store.append(1, role, content)
        # The newest 10 tokens start on "c d", an answer: the window starts after it.
        assert [m["content"] for m in store.as_messages(1)] == ["e f", "g h", "i j", "k l"]

    def test_stable_window_is_trimmed_when_it_would_pass_max_messages(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store(trim="stable", max_messages=4, stable_fill=0.5)
        for content in "abcd":
            store.append(1, "user", content)
        assert [m["content"] for m in store.as_messages(1)] == list("abcd")
        store.append(1, "user", "e")  # "a" drops off max_messages: the window trims to 2
        assert [m["content"] for m in store.as_messages(1)] == ["d", "e"]
        assert [m.content for m in store.get(1)] == list("bcde")

    def test_budget_counts_the_message_overhead_of_every_message(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store(
            max_tokens=10, count_tokens=words, system_prompt="be brief", message_overhead=2
        )
        for content in ("a", "b", "c"):
            store.append(1, "user", content)
        # System prompt 2 + 2, then 1 + 2 per message: two messages fill the 10 tokens.
        assert [m["content"] for m in store.as_messages(1)] == ["be brief", "b", "c"]

    def test_system_prompt_and_its_overhead_filling_the_budget_is_refused(
        self, make_store: StoreFactory
    ) -> None:
        with pytest.raises(InvalidOptionError, match="more than the system prompt's 4 tokens"):
            make_store(
                max_tokens=4, count_tokens=words, system_prompt="be brief", message_overhead=2
            )

    @pytest.mark.parametrize("trim", ["sliding", "stable"])
    @pytest.mark.parametrize("answer", ["assistant", "tool"])
    def test_window_never_starts_on_an_answer(
        self, make_store: StoreFactory, trim: str, answer: str
    ) -> None:
        store = make_store(trim=trim, max_tokens=6, count_tokens=words, stable_fill=0.5)
        store.append(1, "user", "what is two plus two")  # 5 tokens
        store.append(1, answer, "four")
        store.append(1, "user", "and three")
        assert store.as_messages(1) == [{"role": "user", "content": "and three"}]

    @pytest.mark.parametrize("trim", ["sliding", "stable"])
    def test_window_without_budget_never_starts_on_an_answer(
        self, make_store: StoreFactory, trim: str
    ) -> None:
        store = make_store(trim=trim, max_messages=2)
        store.append(1, "user", "hi")
        store.append(1, "assistant", "hello")
        store.append(1, "user", "bye")  # "hi" drops off: the history starts on "hello"
        assert store.as_messages(1) == [{"role": "user", "content": "bye"}]
        assert [m.content for m in store.get(1)] == ["hello", "bye"]

    @pytest.mark.parametrize("trim", ["sliding", "stable"])
    def test_lone_newest_answer_is_still_sent(self, make_store: StoreFactory, trim: str) -> None:
        store = make_store(trim=trim, max_tokens=4, count_tokens=words)
        store.append(1, "assistant", "welcome")
        assert store.as_messages(1) == [{"role": "assistant", "content": "welcome"}]
        store.append(1, "user", "what can you do")
        store.append(1, "assistant", "answer questions")
        assert store.as_messages(1) == [{"role": "assistant", "content": "answer questions"}]

    @pytest.mark.parametrize("trim", ["sliding", "stable"])
    def test_on_trim_gets_every_message_that_left_the_window_once_oldest_first(
        self, make_store: StoreFactory, trim: str
    ) -> None:
        log = EvictionLog()
        store = make_store(trim=trim, max_tokens=6, count_tokens=words, on_trim=log)
        sent: list[str] = []
        for number in range(12):
            store.append(1, "user" if number % 2 == 0 else "assistant", f"m{number} x")
            sent.append(f"m{number} x")
            window = [m["content"] for m in store.as_messages(1)]
            trimmed = [m.content for _, batch in log.calls for m in batch]
            assert trimmed + window == sent
        assert {channel for channel, _ in log.calls} == {1}
        assert all(batch for _, batch in log.calls)

    def test_on_trim_gets_a_message_dropped_off_max_messages_from_the_window(
        self, make_store: StoreFactory
    ) -> None:
        log = EvictionLog()
        store = make_store(max_messages=2, on_trim=log)
        store.append(1, "user", "a")
        store.append(1, "assistant", "b")
        store.append(1, "user", "c")  # "a" drops off, inside this append
        assert log.calls == [(1, (Message("user", "a"),))]
        store.as_messages(1)  # "b", an answer, leaves the window
        assert log.calls[1:] == [(1, (Message("assistant", "b"),))]
        store.append(1, "user", "d")  # "b" had left already
        assert len(log.calls) == 2

    def test_on_trim_is_never_called_without_messages(self, make_store: StoreFactory) -> None:
        log = EvictionLog()
        store = make_store(max_messages=1, trim="stable", on_trim=log)
        store.append(1, "user", "a")
        store.as_messages(1)
        store.append(1, "user", "b")  # "a" drops off the window, inside this append
        store.as_messages(1)  # the window lost a message: it is trimmed, with nothing left to trim
        assert log.calls == [(1, (Message("user", "a"),))]

    def test_on_trim_is_not_called_for_clear_or_eviction(self, make_store: StoreFactory) -> None:
        log = EvictionLog()
        store = make_store(max_channels=1, max_messages=1, trim="stable", on_trim=log)
        store.append(1, "user", "a")
        store.clear(1)
        store.append(2, "user", "b")
        store.append(3, "user", "c")  # evicts 2
        assert log.calls == []
        assert store.stats.evictions == 1

    def test_failing_on_trim_is_logged_counted_and_leaves_store_consistent(
        self, make_store: StoreFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        def explode(channel: Hashable, messages: tuple[Message, ...]) -> None:
            raise RuntimeError("boom")

        store = make_store(max_tokens=2, count_tokens=words, on_trim=explode)
        store.append(1, "user", "a b")
        store.append(1, "user", "c d")
        with caplog.at_level(logging.ERROR, logger="botperf"):
            assert store.as_messages(1) == [{"role": "user", "content": "c d"}]
        assert "on_trim" in caplog.text
        assert "boom" in caplog.text
        assert store.stats.trim_errors == 1
        assert store.as_messages(1) == [{"role": "user", "content": "c d"}]
        assert store.stats.trim_errors == 1  # "a b" was handed over once, failing or not

    def test_summary_is_sent_right_after_the_system_prompt(self, make_store: StoreFactory) -> None:
        store = make_store(system_prompt="Be brief.")
        store.append(1, "user", "hi")
        assert store.set_summary(1, "Earlier: greetings.") is True
        assert store.get_summary(1) == "Earlier: greetings."
        assert store.as_messages(1) == [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Earlier: greetings."},
            {"role": "user", "content": "hi"},
        ]
        assert store.set_summary(1, None) is True
        assert store.get_summary(1) is None
        assert len(store.as_messages(1)) == 2

    def test_summary_counts_in_the_budget(self, make_store: StoreFactory) -> None:
        store = make_store(max_tokens=8, count_tokens=words, message_overhead=1)
        for content in ("a", "b", "c"):
            store.append(1, "user", content)
        assert len(store.as_messages(1)) == 3  # 3 x (1 + 1)
        store.set_summary(1, "x y z")  # 3 + 1: only two messages fit beside it
        assert [m["content"] for m in store.as_messages(1)] == ["x y z", "b", "c"]

    def test_summary_of_a_channel_not_held_is_ignored(self, make_store: StoreFactory) -> None:
        store = make_store()
        assert store.set_summary(1, "text") is False
        assert store.get_summary(1) is None
        assert 1 not in store

    def test_summary_does_not_change_recency(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "a")
        store.append(2, "user", "b")
        store.set_summary(1, "text")
        store.get_summary(1)
        assert store.channels() == [1, 2]
        assert (store.stats.hits, store.stats.misses) == (0, 0)

    def test_clear_and_eviction_remove_the_summary(self, make_store: StoreFactory) -> None:
        store = make_store(max_channels=1)
        store.append(1, "user", "a")
        store.set_summary(1, "one")
        store.clear(1)
        store.append(1, "user", "a")
        assert store.get_summary(1) is None
        store.set_summary(1, "one")
        store.append(2, "user", "b")  # evicts 1
        store.append(1, "user", "a")
        assert store.get_summary(1) is None

    def test_non_string_summary_is_refused(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.append(1, "user", "a")
        with pytest.raises(TypeError, match="summary must be a str, or None"):
            store.set_summary(1, b"text")

    def test_summary_tokens_with_the_system_prompt_over_budget_keep_the_newest(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store(max_tokens=4, count_tokens=words, system_prompt="s")
        store.append(1, "user", "a")
        store.append(1, "user", "b")
        store.set_summary(1, "x y z")
        assert [m["content"] for m in store.as_messages(1)] == ["s", "x y z", "b"]
        assert store.stats.over_budget == 1

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"trim": "fixed"}, "trim must be 'sliding' or 'stable'"),
            ({"trim": None}, "trim must be 'sliding' or 'stable'"),
            ({"stable_fill": 0}, "stable_fill must be a number above 0 and below 1"),
            ({"stable_fill": 1}, "stable_fill must be a number above 0 and below 1"),
            ({"stable_fill": 1.5}, "stable_fill must be a number above 0 and below 1"),
            ({"stable_fill": -0.5}, "stable_fill must be a number above 0 and below 1"),
            ({"stable_fill": float("nan")}, "stable_fill must be a number above 0"),
            ({"stable_fill": True}, "stable_fill must be a number above 0"),
            ({"stable_fill": "0.5"}, "stable_fill must be a number above 0"),
            ({"message_overhead": -1}, "message_overhead must be an int of at least 0"),
            ({"message_overhead": 1.5}, "message_overhead must be an int of at least 0"),
            ({"message_overhead": True}, "message_overhead must be an int of at least 0"),
            ({"on_trim": "summarize"}, "on_trim must be a callable"),
        ],
    )
    def test_bad_trim_options_are_refused(
        self, make_store: StoreFactory, options: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(InvalidOptionError, match=message) as info:
            make_store(**options)
        [(option, value)] = options.items()
        assert info.value.option == option
        assert info.value.value is value

    @pytest.mark.parametrize(
        ("trim", "with_on_trim"), [("sliding", False), ("sliding", True), ("stable", True)]
    )
    def test_store_matches_the_model(
        self, make_store: StoreFactory, trim: str, with_on_trim: bool
    ) -> None:
        run_model(
            make_store,
            None,
            trim=trim,
            with_on_trim=with_on_trim,
            max_examples=self.model_examples,
        )


class DumpLoadContract:
    """Behaviour of ``dump`` and ``load``, for stores that write files."""

    def test_round_trip_keeps_messages_order_and_recency(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        store = make_store()
        store.append(2, "user", "b", author="bob")
        store.append("general", "user", "c")
        store.append(1, "user", "a")
        store.append(2, "assistant", "b2")
        store.dump(tmp_path / "history.json")
        loaded = load_store(tmp_path / "history.json")
        assert loaded.channels() == ["general", 1, 2]
        assert loaded.get(2) == (Message("user", "b", "bob"), Message("assistant", "b2"))

    def test_round_trip_keeps_int_and_str_keys_apart(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        store = make_store()
        store.append(1, "user", "int")
        store.append("1", "user", "str")
        store.dump(tmp_path / "h.json")
        loaded = load_store(tmp_path / "h.json")
        assert [(type(c), c) for c in loaded.channels()] == [(int, 1), (str, "1")]

    def test_round_trip_of_empty_store(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        make_store().dump(tmp_path / "h.json")
        assert len(load_store(tmp_path / "h.json")) == 0

    def test_load_applies_the_new_limits(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        store = make_store()
        for channel in (1, 2, 3):
            for content in ("a", "b", "c"):
                store.append(channel, "user", content)
        store.dump(tmp_path / "h.json")
        log = EvictionLog()
        loaded = load_store(tmp_path / "h.json", max_channels=2, max_messages=2, on_evict=log)
        assert loaded.channels() == [2, 3]
        assert [m.content for m in loaded.get(3)] == ["b", "c"]
        assert [channel for channel, _ in log.calls] == [1]

    def test_dump_replaces_the_file_and_leaves_no_temporary(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        path = tmp_path / "h.json"
        path.write_text("old", encoding="utf-8")
        store = make_store()
        store.append(1, "user", "hi")
        store.dump(path)
        assert [p.name for p in tmp_path.iterdir()] == ["h.json"]
        assert load_store(path).get(1) == (Message("user", "hi"),)

    def test_dump_of_unwritable_key_writes_nothing(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        path = tmp_path / "h.json"
        path.write_text("old", encoding="utf-8")
        store = make_store()
        store.append((1, 2), "user", "hi")
        with pytest.raises(TypeError, match="must be a str or int"):
            store.dump(path)
        assert path.read_text(encoding="utf-8") == "old"
        assert [p.name for p in tmp_path.iterdir()] == ["h.json"]

    def test_failed_dump_leaves_no_temporary(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        (tmp_path / "taken").mkdir()
        store = make_store()
        store.append(1, "user", "hi")
        with pytest.raises(OSError, match="taken"):
            store.dump(tmp_path / "taken")
        assert [p.name for p in tmp_path.iterdir()] == ["taken"]

    def test_round_trip_keeps_any_text(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        text = 'emoji \U0001f600, quote ", newline \n, lone surrogate \ud800'
        store = make_store()
        store.append("\u00e9t\u00e9", "user", text, author="\u00e9")
        store.dump(tmp_path / "h.json")
        assert load_store(tmp_path / "h.json").get("\u00e9t\u00e9") == (
            Message("user", text, "\u00e9"),
        )

    def test_load_of_missing_file_names_it(self, load_store: LoadFactory, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match=r"no-such\.json") as info:
            load_store(tmp_path / "no-such.json")
        assert isinstance(info.value, FileNotFoundError)

    def test_load_of_truncated_file_names_file_and_problem(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        store = make_store()
        store.append(1, "user", "hi")
        path = tmp_path / "h.json"
        store.dump(path)
        path.write_bytes(path.read_bytes()[:-5])
        with pytest.raises(FileFormatError, match=r"h\.json.*not valid JSON, truncated"):
            load_store(path)

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("", "not valid JSON"),
            ("\xff", "not valid JSON"),
            ("[]", "not a HistoryStore dump"),
            ('{"format": "other"}', "not a HistoryStore dump"),
            ('{"format": "botperf.history", "version": 99}', "version 99 is not supported"),
            ('{"format": "botperf.history", "version": 1}', '"channels" is not a list'),
            ('{"format": "botperf.history", "version": 1, "channels": [1]}', r"channels\[0\]"),
            (
                '{"format": "botperf.history", "version": 1, '
                '"channels": [{"channel": 1.5, "messages": []}]}',
                r'channels\[0\]\["channel"\] is not a str or an int',
            ),
            (
                '{"format": "botperf.history", "version": 1, '
                '"channels": [{"channel": 1, "messages": [["user", "hi"]]}]}',
                r"channels\[0\]\.messages\[0\] is not a \[role, content, author\]",
            ),
            (
                '{"format": "botperf.history", "version": 1, '
                '"channels": [{"channel": 1, "messages": [["", "hi", null]]}]}',
                r"channels\[0\]\.messages\[0\]",
            ),
            (
                '{"format": "botperf.history", "version": 1, '
                '"channels": [{"channel": 1, "messages": [], "summary": 5}]}',
                r'channels\[0\]\["summary"\] is not a str',
            ),
            (
                '{"format": "botperf.history", "version": 1, '
                '"channels": [{"channel": 1, "messages": [["user", "hi", null]], "trimmed": 1}]}',
                r'channels\[0\]\["trimmed"\] is not an int from 0',
            ),
            (
                '{"format": "botperf.history", "version": 1, '
                '"channels": [{"channel": 1, "messages": [], "trimmed": -1}]}',
                r'channels\[0\]\["trimmed"\] is not an int from 0',
            ),
            (
                '{"format": "botperf.history", "version": 1, '
                '"channels": [{"channel": 1, "messages": [], "overflow": "yes"}]}',
                r'channels\[0\]\["overflow"\] is not a bool',
            ),
        ],
    )
    def test_load_of_malformed_file_names_file_and_problem(
        self, load_store: LoadFactory, tmp_path: Path, text: str, problem: str
    ) -> None:
        path = tmp_path / "h.json"
        path.write_text(text, encoding="latin-1")
        with pytest.raises(FileFormatError, match=problem) as info:
            load_store(path)
        assert info.value.path == str(path)
        assert "h.json" in str(info.value)

    @pytest.mark.parametrize("trim", ["sliding", "stable"])
    def test_round_trip_keeps_summaries_and_windows(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path, trim: str
    ) -> None:
        options: dict[str, Any] = {
            "trim": trim,
            "max_tokens": 12,
            "max_messages": 6,
            "count_tokens": words,
            "system_prompt": "s",
            "message_overhead": 1,
        }
        log = EvictionLog()
        store = make_store(on_trim=log, **options)
        for number in range(7):
            store.append(1, "user" if number % 2 == 0 else "assistant", f"m{number} x")
            store.as_messages(1)
        store.append(1, "assistant", "pending")  # not yet seen by a prompt
        store.set_summary(1, "earlier")
        store.dump(tmp_path / "h.json")
        loaded_log = EvictionLog()
        loaded = load_store(tmp_path / "h.json", on_trim=loaded_log, **options)
        assert loaded.get_summary(1) == "earlier"
        trimmed_before = len(log.calls)
        for number in range(7, 14):
            assert loaded.as_messages(1) == store.as_messages(1)
            for copy in (store, loaded):
                copy.append(1, "user" if number % 2 == 0 else "assistant", f"m{number} x")
        assert loaded_log.calls == log.calls[trimmed_before:]
        assert loaded_log.calls  # the windows did move after the reload

    def test_round_trip_keeps_a_stable_window_that_lost_messages(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        store = make_store(trim="stable", max_messages=3)
        for content in "abc":
            store.append(1, "user", content)
        store.as_messages(1)
        store.append(1, "user", "d")  # "a" drops off the window: the next prompt trims
        store.dump(tmp_path / "h.json")
        loaded = load_store(tmp_path / "h.json", trim="stable", max_messages=3)
        assert loaded.as_messages(1) == store.as_messages(1) == [{"role": "user", "content": "d"}]

    def test_load_does_not_hand_trimmed_messages_to_on_trim_again(
        self, make_store: StoreFactory, load_store: LoadFactory, tmp_path: Path
    ) -> None:
        store = make_store(max_tokens=2, count_tokens=words, on_trim=EvictionLog())
        for content in ("a b", "c d", "e f"):
            store.append(1, "user", content)
        store.as_messages(1)
        store.dump(tmp_path / "h.json")
        log = EvictionLog()
        loaded = load_store(
            tmp_path / "h.json", max_tokens=2, count_tokens=words, max_messages=2, on_trim=log
        )
        loaded.as_messages(1)
        assert log.calls == []
        assert [m.content for m in loaded.get(1)] == ["c d", "e f"]

    @pytest.mark.parametrize("trim", ["sliding", "stable"])
    def test_store_matches_the_model_through_dump_and_load(
        self, make_store: StoreFactory, load_store: LoadFactory, trim: str
    ) -> None:
        run_model(make_store, load_store, trim=trim)


# The model-based check: a store with tiny limits against plain lists.

# Mostly one channel, so that its conversation grows long enough to be trimmed.
CHANNELS = st.sampled_from([1, 1, 1, 2, 3, "1", "b"])
ROLES = st.sampled_from(["user", "user", "assistant", "tool"])
CONTENTS = st.text(alphabet="ab ", max_size=12)
AUTHORS = st.none() | st.sampled_from(["ann", "bob"])
SUMMARIES = st.none() | st.sampled_from(["", "so far", "a long summary of it all"])
OVERHEAD = 1
OPTIONS: dict[str, Any] = {
    "max_channels": 3,
    "max_messages": 4,
    "max_tokens": 12,
    "count_tokens": words,
    "system_prompt": "be brief",
    "message_overhead": OVERHEAD,
    "stable_fill": 0.5,
}
ANSWERS = ("assistant", "tool")


def prompt_tokens(prompt: list[dict[str, str]]) -> int:
    """A prompt's tokens as the stores' budget counts them (with OPTIONS)."""
    return sum(words(message["content"]) + OVERHEAD for message in prompt)


def as_dicts(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


class ModelChannel:
    """One channel of the model: its history, window start and what left it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        # As the stores define it: the window's first message, -1 once a "stable"
        # window lost messages to max_messages before its next prompt.
        self.start = 0
        self.summary: str | None = None
        self.appended: list[Message] = []  # since the channel was created
        self.trimmed: list[Message] = []  # given to on_trim since then
        # Behaviour 1, checked without the model: the last prompt and what came since.
        self.last_prompt: list[dict[str, str]] | None = None
        self.since: list[Message] = []

    def head(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": OPTIONS["system_prompt"]}]
        if self.summary is not None:
            head.append({"role": "system", "content": self.summary})
        return head

    def fits(self, first: int, tokens: int, count: int) -> bool:
        window = self.messages[first:]
        return len(window) <= count and prompt_tokens(self.head() + as_dicts(window)) <= tokens

    def newest_within(self, low: int, tokens: int, count: int) -> int:
        """The oldest start from ``low`` on whose window fits both limits; the newest else."""
        for first in range(low, len(self.messages)):
            if self.fits(first, tokens, count):
                return first
        return len(self.messages) - 1

    def window_start(self, trim: str, tracked: bool) -> int:
        budget, limit = OPTIONS["max_tokens"], OPTIONS["max_messages"]
        # A tracked window never takes back what left it; an untracked "sliding" one is
        # the newest messages that fit, which a shorter summary lets grow back.
        low = max(self.start, 0) if tracked else 0
        if trim == "sliding":
            first = self.newest_within(low, budget, limit)
        elif self.start >= 0 and self.fits(low, budget, limit):
            first = low
        else:
            fill = OPTIONS["stable_fill"]
            first = self.newest_within(low, int(fill * budget), max(1, int(fill * limit)))
        while first < len(self.messages) - 1 and self.messages[first].role in ANSWERS:
            first += 1
        return first


class HistoryModel(RuleBasedStateMachine):
    """The store against a list of ``[channel, ModelChannel]``, least recent first."""

    make_store: StoreFactory
    load_store: LoadFactory | None
    trim: str
    with_on_trim: bool

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.log = EvictionLog()
        self.trim_log = EvictionLog()
        self.store = self.make_store(**self.options())
        self.model: list[tuple[Hashable, ModelChannel]] = []
        self.evicted: list[tuple[Hashable, tuple[Message, ...]]] = []
        self.expected_trims: list[tuple[Hashable, tuple[Message, ...]]] = []
        self.hits = self.misses = self.over_budget = 0

    @property
    def tracked(self) -> bool:
        return self.trim == "stable" or self.with_on_trim

    def options(self) -> dict[str, Any]:
        on_trim = self.trim_log if self.with_on_trim else None
        return {"on_evict": self.log, "on_trim": on_trim, "trim": self.trim, **OPTIONS}

    def teardown(self) -> None:
        self.directory.cleanup()

    def find(self, channel: Hashable) -> int | None:
        for index, (key, _) in enumerate(self.model):
            if key == channel:
                return index
        return None

    def touch(self, channel: Hashable) -> ModelChannel | None:
        index = self.find(channel)
        if index is None:
            self.misses += 1
            return None
        self.hits += 1
        entry = self.model.pop(index)
        self.model.append(entry)
        return entry[1]

    def hand_over(self, channel: Hashable, state: ModelChannel, messages: list[Message]) -> None:
        if messages:
            state.trimmed += messages
            if self.with_on_trim:
                self.expected_trims.append((channel, tuple(messages)))

    @rule(channel=CHANNELS, role=ROLES, content=CONTENTS, author=AUTHORS)
    def append(self, channel: Hashable, role: str, content: str, author: str | None) -> None:
        self.store.append(channel, role, content, author=author)
        index = self.find(channel)
        state = ModelChannel() if index is None else self.model.pop(index)[1]
        message = Message(role, content, author)
        if len(state.messages) == OPTIONS["max_messages"]:
            oldest = state.messages.pop(0)
            if state.start > 0:
                state.start -= 1
            else:
                self.hand_over(channel, state, [oldest])
                if self.trim == "stable":
                    state.start = -1
        state.messages.append(message)
        state.appended.append(message)
        state.since.append(message)
        self.model.append((channel, state))
        if len(self.model) > OPTIONS["max_channels"]:
            evicted_channel, evicted_state = self.model.pop(0)
            self.evicted.append((evicted_channel, tuple(evicted_state.messages)))

    @rule(channel=CHANNELS, question=CONTENTS, answer=CONTENTS)
    def turn(self, channel: Hashable, question: str, answer: str) -> None:
        """A bot's turn: the question, the prompt built for it, the answer."""
        self.append(channel, "user", question, None)
        self.as_messages(channel)
        self.append(channel, "assistant", answer, None)

    @rule(channel=CHANNELS)
    def get(self, channel: Hashable) -> None:
        state = self.touch(channel)
        assert self.store.get(channel) == (() if state is None else tuple(state.messages))

    @rule(channel=CHANNELS)
    def as_messages(self, channel: Hashable) -> None:
        prompt = self.store.as_messages(channel)
        state = self.touch(channel)
        if state is None:
            assert prompt == [{"role": "system", "content": OPTIONS["system_prompt"]}]
            return
        first = self.window_moves(channel, state)
        expected = state.head() + as_dicts(state.messages[first:])
        if first == len(state.messages) - 1 and prompt_tokens(expected) > OPTIONS["max_tokens"]:
            self.over_budget += 1
        assert prompt == expected
        if self.tracked:
            # Exactly once, oldest first: what left the window and the window are all
            # that was appended, in order.
            window = prompt[len(state.head()) :]
            assert as_dicts(state.trimmed) + window == as_dicts(state.appended)
        if self.trim == "stable":
            self.check_prefix_is_stable(state, prompt)
        state.last_prompt, state.since = prompt, []

    def window_moves(self, channel: Hashable, state: ModelChannel) -> int:
        first = state.window_start(self.trim, self.tracked)
        self.hand_over(channel, state, state.messages[max(state.start, 0) : first])
        state.start = first
        return first

    def check_prefix_is_stable(self, state: ModelChannel, prompt: list[dict[str, str]]) -> None:
        """Behaviour 1 from the prompts alone: the new one extends the last, or it had to trim."""
        last = state.last_prompt
        if last is None:
            return
        head = len(state.head())
        extended = last + as_dicts(state.since)
        window = len(extended) - head
        if prompt_tokens(extended) <= OPTIONS["max_tokens"] and window <= OPTIONS["max_messages"]:
            if last[head:] and last[head]["role"] not in ANSWERS:
                assert prompt == extended
            return
        # Trimmed: to the fill of both limits, unless the newest message alone is left.
        assert prompt[:head] == last[:head]
        if len(prompt) - head > 1:
            fill = OPTIONS["stable_fill"]
            assert prompt_tokens(prompt) <= fill * OPTIONS["max_tokens"]
            assert len(prompt) - head <= fill * OPTIONS["max_messages"]
            assert prompt[head]["role"] not in ANSWERS

    @rule(channel=CHANNELS, summary=SUMMARIES)
    def set_summary(self, channel: Hashable, summary: str | None) -> None:
        index = self.find(channel)
        assert self.store.set_summary(channel, summary) is (index is not None)
        if index is not None:
            state = self.model[index][1]
            state.summary = summary
            state.last_prompt = None  # the prompt changes where the summary is
        assert self.store.get_summary(channel) == (None if index is None else summary)

    @rule(channel=CHANNELS)
    def contains(self, channel: Hashable) -> None:
        assert (channel in self.store) == (self.find(channel) is not None)

    @rule(channel=CHANNELS)
    def clear(self, channel: Hashable) -> None:
        self.store.clear(channel)
        index = self.find(channel)
        if index is not None:
            del self.model[index]

    @precondition(lambda self: self.load_store is not None)
    @rule()
    def dump_and_load(self) -> None:
        assert self.load_store is not None
        path = Path(self.directory.name) / "history.json"
        self.store.dump(path)
        self.store = self.load_store(path, **self.options())
        self.hits = self.misses = self.over_budget = 0

    @invariant()
    def same_channels_in_same_order(self) -> None:
        assert self.store.channels() == [channel for channel, _ in self.model]
        assert [type(c) for c in self.store.channels()] == [type(c) for c, _ in self.model]
        assert len(self.store) == len(self.model)

    @invariant()
    def same_evictions_and_trims(self) -> None:
        assert self.log.calls == self.evicted
        assert self.trim_log.calls == self.expected_trims

    @invariant()
    def same_stats(self) -> None:
        stats = self.store.stats
        assert (stats.hits, stats.misses) == (self.hits, self.misses)
        assert stats.over_budget == self.over_budget
        assert stats.channels == len(self.model)
        assert stats.messages == sum(len(state.messages) for _, state in self.model)
        assert stats.trim_errors == 0


def run_model(
    make_store: StoreFactory,
    load_store: LoadFactory | None,
    *,
    trim: str = "sliding",
    with_on_trim: bool = True,
    max_examples: int = 100,
) -> None:
    # staticmethod: the factories are plain callables, not methods of the machine.
    attributes = {
        "make_store": staticmethod(make_store),
        "load_store": None if load_store is None else staticmethod(load_store),
        "trim": trim,
        "with_on_trim": with_on_trim,
    }
    machine = type("HistoryModelRun", (HistoryModel,), attributes)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
