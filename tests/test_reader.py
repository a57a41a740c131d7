from __future__ import annotations

import errno
import json
import logging
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from permissions import closed_folder, unreadable_file

from botperf import BotperfError, FileFormatError, InvalidOptionError, read_metrics
from botperf._reader import DEFAULT_MAX_LINE_BYTES

json_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
events = st.dictionaries(st.text(), json_scalars, max_size=5)


def write_lines(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@given(written=st.lists(events, max_size=20))
def test_reads_back_every_event_in_order(
    tmp_path_factory: pytest.TempPathFactory, written: list[dict[str, object]]
) -> None:
    path = tmp_path_factory.mktemp("m") / "metrics.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in written), encoding="utf-8")
    assert list(read_metrics(path)) == written


def test_torn_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_lines(tmp_path / "m.jsonl", '{"ts": 1.0, "event": "a"}\n{"ts": 2.0, "ev')
    with caplog.at_level(logging.WARNING, logger="botperf"):
        assert list(read_metrics(path)) == [{"ts": 1.0, "event": "a"}]
    assert "torn last line 2" in caplog.text


def test_torn_multibyte_character_on_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"event": "a"}\n{"event": "\xc3')
    assert list(read_metrics(path)) == [{"event": "a"}]


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", '{"event": "a"}\n{"event": "b"}')
    assert [event["event"] for event in read_metrics(path)] == ["a", "b"]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", '\n{"event": "a"}\n\n')
    assert list(read_metrics(path)) == [{"event": "a"}]


def test_malformed_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", '{"event": "a"}\nnot json\n{"event": "b"}\n')
    with pytest.raises(FileFormatError, match=r"m\.jsonl, line 2: not valid JSON") as info:
        list(read_metrics(path))
    assert info.value.line == 2
    assert info.value.path == str(path)


def test_non_object_line_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", "[1, 2]\n")
    with pytest.raises(FileFormatError, match="expected a JSON object, found list"):
        list(read_metrics(path))


def test_missing_file_raises_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no metrics file at") as info:
        read_metrics(tmp_path / "absent.jsonl")
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, BotperfError)


def test_directory_is_not_a_metrics_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path)


def test_a_file_removed_before_iterating_is_a_missing_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", '{"event": "a"}\n')
    events = read_metrics(path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="no metrics file at"):
        next(events)


def test_a_path_through_a_file_is_a_missing_file(tmp_path: Path) -> None:
    write_lines(tmp_path / "m.jsonl", "")
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "m.jsonl" / "inside.jsonl")


def test_a_deeply_nested_line_is_a_format_error_naming_the_line(tmp_path: Path) -> None:
    depth = 100_000
    path = tmp_path / "m.jsonl"
    path.write_text('{"event": "a"}\n' + "[" * depth + "]" * depth + '\n{"event": "b"}\n')
    events = read_metrics(path)
    assert next(events) == {"event": "a"}
    with pytest.raises(FileFormatError, match=r"m\.jsonl, line 2: .*nested too deeply") as info:
        next(events)
    assert info.value.line == 2
    assert info.value.path == str(path)


def test_a_deeply_nested_object_is_refused_as_well(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    with pytest.raises(FileFormatError, match=r"line 1: .*nested too deeply"):
        list(read_metrics(path))


def test_a_deeply_nested_torn_last_line_is_skipped_like_any_torn_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"event": "a"}\n{"x": ' + "[" * 100_000)
    with caplog.at_level(logging.WARNING, logger="botperf"):
        assert list(read_metrics(path)) == [{"event": "a"}]
    assert "torn last line 2" in caplog.text


def test_a_line_longer_than_max_line_bytes_is_a_format_error_naming_the_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.jsonl"
    long_event = json.dumps({"event": "long", "text": "x" * 200})
    path.write_text(f'{{"event": "a"}}\n{long_event}\n{{"event": "b"}}\n')
    events = read_metrics(path, max_line_bytes=100)
    assert next(events) == {"event": "a"}
    with pytest.raises(FileFormatError, match=r"line 2: longer than max_line_bytes=100") as info:
        next(events)
    assert info.value.line == 2


def test_a_line_of_exactly_max_line_bytes_is_read(tmp_path: Path) -> None:
    line = json.dumps({"event": "a", "text": "x" * 50})
    path = tmp_path / "m.jsonl"
    path.write_text(f"{line}\n{line}")
    assert len(list(read_metrics(path, max_line_bytes=len(line)))) == 2
    with pytest.raises(FileFormatError, match="line 1: longer than"):
        list(read_metrics(path, max_line_bytes=len(line) - 1))


def test_an_over_long_torn_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"event": "a"}\n' + b"\0" * 5000)
    with caplog.at_level(logging.WARNING, logger="botperf"):
        assert list(read_metrics(path, max_line_bytes=100)) == [{"event": "a"}]
    assert "torn last line 2" in caplog.text


def peak_bytes_reading(path: Path, **options: int) -> tuple[list[dict[str, object]], int]:
    tracemalloc.start()
    try:
        events = list(read_metrics(path, **options))
        return events, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def sparse_file(path: Path, head: bytes, size: int) -> Path:
    """A file of ``head`` then NUL bytes up to ``size``, as a power loss can leave one."""
    with path.open("wb") as file:
        file.write(head)
        file.truncate(size)  # sparse: takes no disk space
    return path


def test_memory_stays_bounded_on_a_huge_line_of_nul_bytes(tmp_path: Path) -> None:
    size = 128 * 1024 * 1024
    path = sparse_file(tmp_path / "m.jsonl", b'{"event": "a"}\n', size)
    events, peak = peak_bytes_reading(path)
    assert events == [{"event": "a"}]
    # A line is read up to max_line_bytes (16 MiB by default) and then in small chunks,
    # so the peak is bounded by a small multiple of that, not by the size of the line.
    assert peak < 3 * DEFAULT_MAX_LINE_BYTES < size


def test_memory_follows_max_line_bytes(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "m.jsonl", b'{"event": "a"}\n', 32 * 1024 * 1024)
    events, peak = peak_bytes_reading(path, max_line_bytes=64 * 1024)
    assert events == [{"event": "a"}]
    assert peak < 4 * 1024 * 1024


def test_a_huge_complete_line_is_an_error_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    size = 64 * 1024 * 1024
    with path.open("wb") as file:
        file.write(b'{"event": "a"}\n')
        file.truncate(size)
        file.seek(size)
        file.write(b'\n{"event": "b"}\n')
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match="line 2: longer than max_line_bytes"):
            list(read_metrics(path, max_line_bytes=64 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "16M", None])
def test_max_line_bytes_must_be_a_positive_int(tmp_path: Path, value: object) -> None:
    path = write_lines(tmp_path / "m.jsonl", '{"event": "a"}\n')
    with pytest.raises(InvalidOptionError, match=r"read_metrics\(max_line_bytes="):
        read_metrics(path, max_line_bytes=value)  # type: ignore[arg-type]


def test_a_file_it_may_not_read_is_a_permission_error_naming_it_at_once() -> None:
    with unreadable_file(b'{"event": "a"}\n') as path, pytest.raises(PermissionError) as info:
        read_metrics(path)
    assert info.value.filename == str(path)
    assert str(path) in str(info.value)
    assert "cannot read the metrics file" in str(info.value)


def test_a_file_in_a_folder_it_may_not_enter_is_a_permission_error_not_a_missing_file() -> None:
    with closed_folder() as folder:
        path = folder / "metrics.jsonl"
        with pytest.raises(PermissionError) as info:
            read_metrics(path)
    assert not isinstance(info.value, FileNotFoundError)
    assert info.value.filename == str(path)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_an_error_while_reading_names_the_file() -> None:
    # Reading a process's memory from address 0 fails with EIO: a real read error, as a
    # failing disk gives, that any user (root too) meets.
    events = read_metrics("/proc/self/mem")
    with pytest.raises(OSError, match="cannot read the metrics file") as info:
        next(events)
    assert info.value.errno == errno.EIO
    assert info.value.filename == "/proc/self/mem"


def test_a_missing_file_is_still_a_file_not_found_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        read_metrics(tmp_path / "absent.jsonl")
    assert str(tmp_path / "absent.jsonl") in str(info.value)
