from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import stat
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from history_contract import DumpLoadContract, HistoryContract, LoadFactory, StoreFactory
from hypothesis import example, given
from hypothesis import strategies as st

from botperf import (
    BotperfError,
    FileFormatError,
    HistoryStats,
    HistoryStore,
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
        (TypeError, (BotperfError, TypeError)),
        (ValueError, (BotperfError, ValueError)),
        (FileFormatError, (BotperfError, ValueError)),
    ],
)
def test_errors_subclass_the_fitting_builtin(
    error: type[Exception], bases: tuple[type[Exception], ...]
) -> None:
    assert issubclass(error, bases)


def test_type_error_names_the_argument_value_and_type() -> None:
    store: HistoryStore[int] = HistoryStore()
    with pytest.raises(TypeError) as info:
        store.append(1, "user", 42)  # type: ignore[arg-type]
    assert str(info.value) == "content must be a str, got 42 (int)"
    assert (info.value.name, info.value.value) == ("content", 42)


def test_repr_shows_size_and_limits() -> None:
    store: HistoryStore[int] = HistoryStore(max_channels=10, max_messages=5)
    store.append(1, "user", "hi")
    assert repr(store) == "HistoryStore(channels=1/10, max_messages=5, max_tokens=None)"


# Hostile and failing files: what fault injection found (issue 13).


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"format": "botperf.history", "version": 1, "channels": [{"channel": 1, '
        '"messages": [["user", "hi", ' + "[" * 100_000 + "]" * 100_000 + "]]}]}",
    ],
    ids=["document", "message"],
)
def test_load_of_deeply_nested_json_is_a_file_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"deep\.json.*nested too deeply") as info:
        HistoryStore.load(path)
    assert info.value.path == str(path)


def _full_store(channels: int, *, content: str = "x" * 100) -> HistoryStore[int]:
    store: HistoryStore[int] = HistoryStore(max_channels=channels)
    for channel in range(channels):
        for _ in range(50):
            store.append(channel, "user", content)
    return store


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a real 64 KiB tmpfs, unmounted afterwards."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a 64 KiB tmpfs needs root on Linux (CI runs the tests as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]
    result = subprocess.run(mount, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_dump_onto_a_full_disk_names_the_file_and_keeps_the_old_one(small_disk: Path) -> None:
    path = small_disk / "h.json"
    _full_store(1, content="old").dump(path)
    old = path.read_bytes()
    with pytest.raises(OSError, match=r"No space left.*h\.json") as info:
        _full_store(100).dump(path)  # about 600 KB
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(path)
    assert isinstance(info.value.__cause__, OSError)
    assert path.read_bytes() == old
    assert [p.name for p in small_disk.iterdir()] == ["h.json"]


def test_dump_into_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "h.json"
    with pytest.raises(FileNotFoundError) as info:
        HistoryStore().dump(path)
    assert info.value.filename == str(path)


# Loads the store as another user: root reads any file, whatever its mode.
_LOAD_AS_NOBODY = """
import os, sys
from botperf import HistoryStore
os.setgid(65534)
os.setuid(65534)
try:
    HistoryStore.load(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__, exc.filename, exc, sep="\\n")
"""


@posix_modes
def test_load_of_an_unreadable_file_raises_permission_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    HistoryStore().dump(path)
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(PermissionError) as info:
            HistoryStore.load(path)
        assert info.value.filename == str(path)
        assert "h.json" in str(info.value)
        return
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_AS_NOBODY, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    name, filename, message = result.stdout.splitlines()
    assert (name, filename) == ("PermissionError", str(path))
    assert "HistoryStore.load()" in message


@pytest.mark.skipif(not os.path.isfile("/proc/self/mem"), reason="needs Linux's /proc/self/mem")
def test_load_of_a_file_that_fails_to_read_names_it() -> None:
    # Reading /proc/self/mem from offset 0 fails with EIO, for root too.
    with pytest.raises(OSError, match=r"/proc/self/mem") as info:
        HistoryStore.load("/proc/self/mem")
    assert info.value.errno == errno.EIO
    assert info.value.filename == "/proc/self/mem"


@posix_modes
def test_load_of_a_symlink_loop_raises_the_os_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.symlink_to(path)
    with pytest.raises(OSError, match=r"h\.json") as info:
        HistoryStore.load(path)
    assert info.value.errno == errno.ELOOP
    assert info.value.filename == str(path)


def test_load_of_a_directory_is_still_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HistoryStore.load(tmp_path)


_set_digits = getattr(sys, "set_int_max_str_digits", None)
_digit_limits = [None] if _set_digits is None else [0, 640, 4300]


@contextlib.contextmanager
def _int_max_str_digits(limit: int | None) -> Iterator[None]:
    if limit is None or _set_digits is None:
        yield
        return
    previous = sys.get_int_max_str_digits()
    _set_digits(limit)
    try:
        yield
    finally:
        _set_digits(previous)


KEYS = st.text() | st.integers() | st.integers(min_value=-(10**6000), max_value=10**6000)


@given(
    channels=st.lists(KEYS, min_size=1, max_size=4, unique_by=lambda key: (type(key), key)),
    dump_limit=st.sampled_from(_digit_limits),
    load_limit=st.sampled_from(_digit_limits),
)
@example(
    channels=[10**5000, -(10**5000), 2**2000, -(2**2000), 2**2001], dump_limit=4300, load_limit=640
)
def test_every_int_and_str_key_round_trips(
    channels: list[int | str], dump_limit: int | None, load_limit: int | None
) -> None:
    store: HistoryStore[int | str] = HistoryStore()
    for channel in channels:
        store.append(channel, "user", "hi")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "h.json"
        with _int_max_str_digits(dump_limit):
            store.dump(path)
        with _int_max_str_digits(load_limit):
            loaded: HistoryStore[int | str] = HistoryStore.load(path)
    assert loaded.channels() == channels
    assert [type(channel) for channel in loaded.channels()] == [type(c) for c in channels]


@pytest.mark.parametrize(
    "channel", [{"int": 1}, {"int": "0xg"}, {"int": "1", "x": 1}, {"hex": "0x1"}], ids=repr
)
def test_load_refuses_a_malformed_big_int_key(tmp_path: Path, channel: object) -> None:
    path = tmp_path / "h.json"
    document = {
        "format": "botperf.history",
        "version": 1,
        "channels": [{"channel": channel, "messages": []}],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(FileFormatError, match=r'channels\[0\]\["channel"\]'):
        HistoryStore.load(path)


# Dumps a big store to argv[1] and stops itself (SIGSTOP) just before the temporary file
# is synced, so that the test kills it exactly while the dump is under way.
_DUMP_AND_STOP = """
import os, signal, sys
from botperf import HistoryStore

store = HistoryStore()
for channel in range(1000):
    for number in range(50):
        store.append(channel, "user", f"message {number} of channel {channel}")

def stop_at_fsync(frame, event, arg):
    if event == "c_call" and arg is os.fsync:
        os.kill(os.getpid(), signal.SIGSTOP)

sys.setprofile(stop_at_fsync)
store.dump(sys.argv[1])
"""


def _temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@contextlib.contextmanager
def _dump_stopped_midway(path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a dump to ``path`` in a child process, stopped with its temporary file written."""
    child = subprocess.Popen([sys.executable, "-c", _DUMP_AND_STOP, str(path)])
    try:
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"the dumping child ended early (status {status})"
        yield child
    finally:
        child.kill()
        child.wait()


@posix_modes
def test_next_dump_removes_the_temporaries_of_killed_dumps(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    for _ in range(3):
        with _dump_stopped_midway(path):
            pass  # killed mid-dump as the block ends
    assert len(_temporaries(tmp_path)) == 3
    store = _full_store(2)
    store.dump(path)
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]
    assert HistoryStore.load(path).channels() == [0, 1]


@posix_modes
def test_dump_leaves_the_temporaries_of_other_files_and_of_dumps_under_way(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.json"
    with _dump_stopped_midway(tmp_path / "other.json"):
        pass
    (tmp_path / ".h.json.notes.tmp").write_text("mine", encoding="utf-8")
    others = _temporaries(tmp_path)
    with _dump_stopped_midway(path):
        [under_way] = set(_temporaries(tmp_path)) - set(others)
        HistoryStore().dump(path)
        assert _temporaries(tmp_path) == sorted([*others, under_way])
    HistoryStore().dump(path)  # the stopped dump was killed: now its file is stale
    assert _temporaries(tmp_path) == others


def test_concurrent_dumps_to_one_path_all_succeed(tmp_path: Path) -> None:
    # Each dump removes stale temporary files: never those of a dump under way.
    path = tmp_path / "h.json"
    errors: list[BaseException] = []

    def dump_often(channel: int) -> None:
        store: HistoryStore[int] = HistoryStore()
        store.append(channel, "user", "hi")
        try:
            for _ in range(100):
                store.dump(path)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dump_often, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]
    assert HistoryStore.load(path).channels()[0] in range(4)


def words(text: str) -> int:
    return len(text.split())


def test_summary_is_counted_once_when_set() -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return 1

    store: HistoryStore[int] = HistoryStore(max_tokens=10, count_tokens=count)
    store.append(1, "user", "a")
    store.set_summary(1, "so far")
    store.as_messages(1)
    store.as_messages(1)
    assert counted == ["a", "so far"]


def test_bad_summary_count_is_refused_and_the_old_summary_kept() -> None:
    counts = iter([1, 1, -1])
    store: HistoryStore[int] = HistoryStore(max_tokens=10, count_tokens=lambda t: next(counts))
    store.append(1, "user", "a")
    store.set_summary(1, "old")
    with pytest.raises(ValueError, match=r"count_tokens\(summary\) must be"):
        store.set_summary(1, "new")
    assert store.get_summary(1) == "old"


def test_dump_writes_summary_and_window_state_beside_the_messages(tmp_path: Path) -> None:
    store: HistoryStore[int] = HistoryStore(max_tokens=2, count_tokens=words, trim="stable")
    for content in ("a b", "c d"):
        store.append(1, "user", content)
    store.as_messages(1)
    store.set_summary(1, "earlier")
    store.append(2, "user", "e")
    store.dump(tmp_path / "h.json")
    document = json.loads((tmp_path / "h.json").read_text(encoding="utf-8"))
    assert document["version"] == 1
    assert document["channels"] == [
        {
            "channel": 1,
            "messages": [["user", "a b", None], ["user", "c d", None]],
            "summary": "earlier",
            "trimmed": 1,
        },
        {"channel": 2, "messages": [["user", "e", None]]},
    ]


def test_a_dump_without_window_state_loads_as_nothing_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(
        '{"format": "botperf.history", "version": 1, "channels": [{"channel": 1, '
        '"messages": [["user", "a b", null], ["user", "c d", null]]}]}',
        encoding="utf-8",
    )
    trimmed: list[tuple[int, tuple[Message, ...]]] = []
    store: HistoryStore[int] = HistoryStore.load(
        path,
        max_tokens=2,
        count_tokens=words,
        trim="stable",
        on_trim=lambda channel, messages: trimmed.append((channel, messages)),
    )
    assert store.get_summary(1) is None
    assert store.as_messages(1) == [{"role": "user", "content": "c d"}]
    assert trimmed == [(1, (Message("user", "a b"),))]


def test_load_into_a_sliding_store_of_a_stable_window_that_lost_messages(tmp_path: Path) -> None:
    stable: HistoryStore[int] = HistoryStore(trim="stable", max_messages=2)
    for content in "abc":
        stable.append(1, "user", content)
    stable.dump(tmp_path / "h.json")
    sliding: HistoryStore[int] = HistoryStore.load(
        tmp_path / "h.json", max_messages=2, on_trim=lambda channel, messages: None
    )
    assert [m["content"] for m in sliding.as_messages(1)] == ["b", "c"]
