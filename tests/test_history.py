from __future__ import annotations

import dataclasses
import logging
import os
import stat
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from history_contract import DumpLoadContract, HistoryContract, LoadFactory, StoreFactory

from botperf import (
    BotperfError,
    HistoryFileError,
    HistoryStats,
    HistoryStore,
    HistoryTypeError,
    HistoryValueError,
    Message,
    approximate_tokens,
)


class TestInMemoryStore(HistoryContract, DumpLoadContract):
    @pytest.fixture
    def make_store(self) -> StoreFactory:
        return HistoryStore

    @pytest.fixture
    def load_store(self) -> LoadFactory:
        return HistoryStore.load


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_default_token_count_is_a_quarter_of_the_length_rounded_up(text: str, tokens: int) -> None:
    assert approximate_tokens(text) == tokens


def test_default_token_count_applies_without_count_tokens() -> None:
    store: HistoryStore[int] = HistoryStore(max_tokens=2)
    store.append(1, "user", "12345678")
    store.append(1, "user", "1234")
    assert [m["content"] for m in store.as_messages(1)] == ["1234"]


def test_count_tokens_is_called_once_per_message() -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return 1

    store: HistoryStore[int] = HistoryStore(max_tokens=10, count_tokens=count, system_prompt="s")
    store.append(1, "user", "a")
    store.append(1, "user", "b")
    store.as_messages(1)
    store.as_messages(1)
    assert counted == ["s", "a", "b"]


def test_count_tokens_is_not_called_without_a_budget() -> None:
    counted: list[str] = []
    store: HistoryStore[int] = HistoryStore(
        count_tokens=lambda text: counted.append(text) or 1, system_prompt="s"
    )
    store.append(1, "user", "a")
    store.as_messages(1)
    assert counted == []


def test_token_counts_follow_evictions_and_clears() -> None:
    store: HistoryStore[int] = HistoryStore(max_channels=1, max_tokens=3, count_tokens=len)
    store.append(1, "user", "abc")
    store.append(2, "user", "de")
    store.clear(2)
    store.append(2, "user", "f")
    store.append(2, "user", "gh")
    assert [m["content"] for m in store.as_messages(2)] == ["f", "gh"]


def test_message_is_an_immutable_value() -> None:
    message = Message("user", "hi")
    assert message.author is None
    assert message == Message(role="user", content="hi", author=None)
    with pytest.raises(AttributeError):
        message.role = "assistant"  # type: ignore[misc]


def test_stats_is_a_frozen_snapshot() -> None:
    store: HistoryStore[int] = HistoryStore()
    before = store.stats
    store.append(1, "user", "hi")
    assert before == HistoryStats(
        hits=0, misses=0, evictions=0, evict_errors=0, over_budget=0, channels=0, messages=0
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.hits = 1  # type: ignore[misc]


class _UnwalkableChannels(OrderedDict[int, Any]):
    """The store's channel map, failing any walk over every channel."""

    def __iter__(self) -> Iterator[int]:
        raise AssertionError("walked every channel")

    def values(self) -> Any:
        raise AssertionError("walked every channel")

    def items(self) -> Any:
        raise AssertionError("walked every channel")


def test_stats_does_not_walk_the_channels() -> None:
    # O(1) shown without a clock: the store's map (private) refuses to be walked.
    store: HistoryStore[int] = HistoryStore(max_channels=2, max_messages=2)
    for channel in (1, 2):
        store.append(channel, "user", "a")
    store._channels = _UnwalkableChannels(store._channels)  # type: ignore[assignment]
    store.append(1, "user", "b")
    store.append(1, "user", "c")
    store.append(3, "user", "d")
    store.clear(2)
    assert (store.stats.channels, store.stats.messages) == (2, 3)


posix_modes = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test, restoring it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@posix_modes
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664], ids=oct)
def test_dump_keeps_the_mode_of_the_file_it_replaces(
    tmp_path: Path, umask: Callable[[int], int], mode: int
) -> None:
    umask(0o077)  # nothing about the new file may come from the umask
    path = tmp_path / "h.json"
    path.write_text("old", encoding="utf-8")
    path.chmod(mode)
    store: HistoryStore[int] = HistoryStore()
    store.append(1, "user", "hi")
    store.dump(path)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@posix_modes
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=oct)
def test_dump_creates_a_new_file_with_the_mode_open_would_give(
    tmp_path: Path, umask: Callable[[int], int], mask: int
) -> None:
    umask(mask)
    (tmp_path / "plain.json").write_text("{}", encoding="utf-8")
    HistoryStore().dump(tmp_path / "h.json")
    mode = stat.S_IMODE((tmp_path / "h.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o666 & ~mask


def test_failing_on_evict_is_logged_by_the_module_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(channel: int, messages: tuple[Message, ...]) -> None:
        raise RuntimeError("boom")

    store: HistoryStore[int] = HistoryStore(max_channels=1, on_evict=explode)
    store.append(1, "user", "a")
    with caplog.at_level(logging.ERROR, logger="botperf._history"):
        store.append(2, "user", "b")
    [record] = caplog.records
    assert record.name == "botperf._history"
    assert record.exc_info is not None


def test_on_evict_may_use_the_store() -> None:
    archived: list[tuple[int, tuple[Message, ...]]] = []

    def archive(channel: int, messages: tuple[Message, ...]) -> None:
        archived.append((channel, messages))
        assert channel not in store
        assert store.get(2) == (Message("user", "b"),)
        store.append(3, "user", "c")  # evicts 2 in turn, from inside the callback

    store: HistoryStore[int] = HistoryStore(max_channels=1, on_evict=archive)
    store.append(1, "user", "a")
    store.append(2, "user", "b")
    assert archived == [(1, (Message("user", "a"),)), (2, (Message("user", "b"),))]
    assert store.channels() == [3]


def test_str_subclasses_are_accepted_as_role() -> None:
    class Role(str):
        pass

    store: HistoryStore[int] = HistoryStore()
    store.append(1, Role("user"), "hi")
    assert store.get(1)[0].role == "user"


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (HistoryTypeError, (BotperfError, TypeError)),
        (HistoryValueError, (BotperfError, ValueError)),
        (HistoryFileError, (BotperfError, ValueError)),
    ],
)
def test_errors_subclass_the_fitting_builtin(
    error: type[Exception], bases: tuple[type[Exception], ...]
) -> None:
    assert issubclass(error, bases)


def test_type_error_names_the_argument_value_and_type() -> None:
    store: HistoryStore[int] = HistoryStore()
    with pytest.raises(HistoryTypeError) as info:
        store.append(1, "user", 42)  # type: ignore[arg-type]
    assert str(info.value) == "content must be a str, got 42 (int)"
    assert (info.value.name, info.value.value) == ("content", 42)


def test_repr_shows_size_and_limits() -> None:
    store: HistoryStore[int] = HistoryStore(max_channels=10, max_messages=5)
    store.append(1, "user", "hi")
    assert repr(store) == "HistoryStore(channels=1/10, max_messages=5, max_tokens=None)"
