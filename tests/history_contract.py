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

    def test_store_matches_the_model(self, make_store: StoreFactory) -> None:
        run_model(make_store, None)


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

    def test_store_matches_the_model_through_dump_and_load(
        self, make_store: StoreFactory, load_store: LoadFactory
    ) -> None:
        run_model(make_store, load_store)


# The model-based check: a store with tiny limits against plain lists.

CHANNELS = st.sampled_from([1, 2, 3, "1", "b"])
ROLES = st.sampled_from(["user", "assistant"])
CONTENTS = st.text(alphabet="ab ", max_size=12)
AUTHORS = st.none() | st.sampled_from(["ann", "bob"])
OPTIONS: dict[str, Any] = {
    "max_channels": 3,
    "max_messages": 3,
    "max_tokens": 7,
    "count_tokens": words,
    "system_prompt": "be brief",
}


class HistoryModel(RuleBasedStateMachine):
    """The store against a list of ``[channel, [Message, ...]]``, least recent first."""

    make_store: StoreFactory
    load_store: LoadFactory | None

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.log = EvictionLog()
        self.store = self.make_store(on_evict=self.log, **OPTIONS)
        self.model: list[tuple[Hashable, list[Message]]] = []
        self.evicted: list[tuple[Hashable, tuple[Message, ...]]] = []
        self.hits = self.misses = self.over_budget = 0

    def teardown(self) -> None:
        self.directory.cleanup()

    def find(self, channel: Hashable) -> int | None:
        for index, (key, _) in enumerate(self.model):
            if key == channel:
                return index
        return None

    def touch(self, channel: Hashable) -> list[Message] | None:
        index = self.find(channel)
        if index is None:
            self.misses += 1
            return None
        self.hits += 1
        entry = self.model.pop(index)
        self.model.append(entry)
        return entry[1]

    @rule(channel=CHANNELS, role=ROLES, content=CONTENTS, author=AUTHORS)
    def append(self, channel: Hashable, role: str, content: str, author: str | None) -> None:
        self.store.append(channel, role, content, author=author)
        index = self.find(channel)
        messages = [] if index is None else self.model.pop(index)[1]
        messages = [*messages, Message(role, content, author)][-OPTIONS["max_messages"] :]
        self.model.append((channel, messages))
        if len(self.model) > OPTIONS["max_channels"]:
            evicted_channel, evicted_messages = self.model.pop(0)
            self.evicted.append((evicted_channel, tuple(evicted_messages)))

    @rule(channel=CHANNELS)
    def get(self, channel: Hashable) -> None:
        messages = self.touch(channel)
        assert self.store.get(channel) == (() if messages is None else tuple(messages))

    @rule(channel=CHANNELS)
    def as_messages(self, channel: Hashable) -> None:
        messages = self.touch(channel) or []
        budget = OPTIONS["max_tokens"] - words(OPTIONS["system_prompt"])
        kept = messages[-1:]
        if kept and words(kept[0].content) > budget:
            self.over_budget += 1
        for message in reversed(messages[:-1]):
            if sum(words(m.content) for m in kept) + words(message.content) > budget:
                break
            kept.insert(0, message)
        expected = [{"role": "system", "content": OPTIONS["system_prompt"]}]
        expected += [{"role": m.role, "content": m.content} for m in kept]
        assert self.store.as_messages(channel) == expected

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
        self.store = self.load_store(path, on_evict=self.log, **OPTIONS)
        self.hits = self.misses = self.over_budget = 0

    @invariant()
    def same_channels_in_same_order(self) -> None:
        assert self.store.channels() == [channel for channel, _ in self.model]
        assert [type(c) for c in self.store.channels()] == [type(c) for c, _ in self.model]
        assert len(self.store) == len(self.model)

    @invariant()
    def same_evictions(self) -> None:
        assert self.log.calls == self.evicted

    @invariant()
    def same_stats(self) -> None:
        stats = self.store.stats
        assert (stats.hits, stats.misses) == (self.hits, self.misses)
        assert stats.over_budget == self.over_budget
        assert stats.channels == len(self.model)
        assert stats.messages == sum(len(messages) for _, messages in self.model)


def run_model(make_store: StoreFactory, load_store: LoadFactory | None) -> None:
    # staticmethod: the factories are plain callables, not methods of the machine.
    factories = {
        "make_store": staticmethod(make_store),
        "load_store": None if load_store is None else staticmethod(load_store),
    }
    machine = type("HistoryModelRun", (HistoryModel,), factories)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
