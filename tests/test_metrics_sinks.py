from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from botperf import BatchMetricsWriter, FileFormatError, JsonLinesFileSink, read_metrics


def batch(start: int, size: int = 3) -> list[dict[str, Any]]:
    return [{"ts": 1.0, "event": "tick", "number": number} for number in range(start, start + size)]


def numbers(path: Path) -> list[int]:
    return [event["number"] for event in read_metrics(path)]


def test_batches_are_appended_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    sink = JsonLinesFileSink(path)
    sink.write_batch(batch(0))
    sink.write_batch(batch(3))
    sink.close()
    assert numbers(path) == list(range(6))


def test_an_existing_file_is_appended_to_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"event": "old"}\n', encoding="utf-8")
    sink = JsonLinesFileSink(path)
    sink.write_batch(batch(0, 1))
    sink.close()
    assert [event["event"] for event in read_metrics(path)] == ["old", "tick"]


def test_rotation_keeps_backups_and_never_splits_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    sink = JsonLinesFileSink(path, rotate_bytes=300, backups=2)
    for start in range(0, 60, 3):
        sink.write_batch(batch(start))
    sink.close()
    files = [Path(f"{path}.2"), Path(f"{path}.1"), path]
    assert sorted(tmp_path.iterdir()) == sorted(files)
    kept = [numbers(file) for file in files]
    for file_numbers in kept:
        assert len(file_numbers) % 3 == 0
        assert all(path.stat().st_size <= 300 for path in files)
    flat = [number for file_numbers in kept for number in file_numbers]
    assert flat == list(range(60 - len(flat), 60))
    assert sink.rotations > 2


def test_a_batch_larger_than_rotate_bytes_stays_whole_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    sink = JsonLinesFileSink(path, rotate_bytes=10, backups=1)
    sink.write_batch(batch(0))
    sink.write_batch(batch(3))
    sink.close()
    assert numbers(Path(f"{path}.1")) == [0, 1, 2]
    assert numbers(path) == [3, 4, 5]


def test_the_writer_passes_rotation_options_to_its_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with BatchMetricsWriter(path, max_batch=5, rotate_bytes=400, backups=3) as metrics:
        for number in range(40):
            metrics.record("tick", number=number)
    assert Path(f"{path}.1").exists()
    assert numbers(path)[-1] == 39


def test_fsync_is_called_once_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    sink = JsonLinesFileSink(tmp_path / "m.jsonl", fsync=True)
    sink.write_batch(batch(0))
    sink.write_batch(batch(3))
    sink.close()
    assert len(synced) == 2


def test_a_batch_is_one_write_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    sizes: list[int] = []

    def counting_write(fd: int, data: bytes) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    path = tmp_path / "m.jsonl"
    sink = JsonLinesFileSink(path)
    sink.write_batch(batch(0, 50))
    sink.close()
    assert sizes == [path.stat().st_size]


def test_a_partial_write_is_cut_back_so_a_retry_writes_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    sink = JsonLinesFileSink(path)
    sink.write_batch(batch(0))
    real_write = os.write
    calls = 0

    def disk_fills_up(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_fills_up)
    with pytest.raises(OSError, match="No space left"):
        sink.write_batch(batch(3))
    monkeypatch.setattr(os, "write", real_write)
    assert numbers(path) == [0, 1, 2]
    sink.write_batch(batch(3))
    sink.close()
    assert numbers(path) == list(range(6))


def test_a_fragment_that_cannot_be_cut_back_stays_on_its_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    sink = JsonLinesFileSink(path)
    real_write = os.write
    calls = 0

    def disk_fills_up(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, data[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    def cannot_truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "write", disk_fills_up)
    monkeypatch.setattr(os, "ftruncate", cannot_truncate)
    with pytest.raises(OSError, match="No space left"):
        sink.write_batch(batch(0))
    monkeypatch.setattr(os, "write", real_write)
    sink.write_batch(batch(3))
    sink.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b'{"ts"'
    with pytest.raises(FileFormatError, match="line 1"):
        list(read_metrics(path))
    assert "could not cut" in caplog.text
    assert [line.count(b'"number"') for line in lines[1:-1]] == [1, 1, 1]


def test_a_torn_last_line_left_by_a_crash_is_cut_off_before_appending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"ts":1.0,"event":"a","number":-1}\n{"ts":2.0,"ev')
    sink = JsonLinesFileSink(path)
    with caplog.at_level(logging.WARNING, logger="botperf"):
        sink.write_batch(batch(0))
    sink.close()
    assert numbers(path) == [-1, 0, 1, 2]
    assert "dropped the torn last line" in caplog.text
    assert "(13 bytes, not a whole event" in caplog.text


def test_a_file_that_is_one_torn_line_is_emptied_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    torn = b'{"ts":2.0,"event":"long","text":"' + b"x" * 200_000  # spans several reads
    path.write_bytes(torn)
    sink = JsonLinesFileSink(path)
    sink.write_batch(batch(0))
    sink.close()
    assert numbers(path) == [0, 1, 2]
    assert path.read_bytes().startswith(b'{"ts":')
    assert b"long" not in path.read_bytes()


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"ts":1.0,"event":"a","number":-1}')
    sink = JsonLinesFileSink(path)
    sink.write_batch(batch(0))
    sink.close()
    assert numbers(path) == [-1, 0, 1, 2]


@pytest.mark.parametrize(
    "deep",
    [
        pytest.param(b"[" * 100_000, id="torn"),
        pytest.param(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="whole"),
    ],
)
def test_a_last_line_nested_too_deep_to_parse_is_cut_off_and_appending_goes_on(
    tmp_path: Path, deep: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"ts":1.0,"event":"a","number":-1}\n' + deep)
    with caplog.at_level(logging.WARNING, logger="botperf"), BatchMetricsWriter(path) as metrics:
        for number in range(3):
            metrics.record("tick", number=number)
    assert numbers(path) == [-1, 0, 1, 2]
    assert metrics.stats.written == 3
    assert not Path(f"{path}.unwritten.jsonl").exists()
    assert f"dropped the torn last line of {path} ({len(deep)} bytes" in caplog.text


def test_a_torn_last_line_that_cannot_be_cut_off_stays_on_its_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"ts":1.0,"event":"a","number":-1}\n{"ts":2.0,"ev')

    def cannot_truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "ftruncate", cannot_truncate)
    sink = JsonLinesFileSink(path)
    sink.write_batch(batch(0))
    sink.close()
    assert path.read_bytes().split(b"\n")[1] == b'{"ts":2.0,"ev'
    assert "could not be cut off" in caplog.text


def test_a_file_whose_end_cannot_be_read_is_a_failed_write_retried_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"ts":1.0,"event":"a","number":-1}\n')
    real_lseek = os.lseek

    def unreadable(fd: int, position: int, how: int) -> int:
        raise OSError(errno.EIO, "I/O error")

    sink = JsonLinesFileSink(path)
    monkeypatch.setattr(os, "lseek", unreadable)
    with pytest.raises(OSError, match="I/O error"):
        sink.write_batch(batch(0))
    monkeypatch.setattr(os, "lseek", real_lseek)
    sink.write_batch(batch(0))
    sink.close()
    assert numbers(path) == [-1, 0, 1, 2]


def test_a_file_that_cannot_be_opened_is_retried_on_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / "later" / "m.jsonl"
    sink = JsonLinesFileSink(path)
    with pytest.raises(FileNotFoundError):
        sink.write_batch(batch(0))
    path.parent.mkdir()
    sink.write_batch(batch(0))
    sink.close()
    assert numbers(path) == [0, 1, 2]


def test_unencodable_values_are_counted_by_the_sink(tmp_path: Path) -> None:
    sink = JsonLinesFileSink(tmp_path / "m.jsonl")
    sink.write_batch([{"event": "x", "value": object()}])
    sink.close()
    assert sink.repr_values == 1
    assert sink.path == str(tmp_path / "m.jsonl")


def test_a_file_already_past_rotate_bytes_is_rotated_before_the_first_batch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"event": "old"}\n' * 20, encoding="utf-8")
    sink = JsonLinesFileSink(path, rotate_bytes=100, backups=1)
    sink.write_batch(batch(0))
    sink.close()
    assert numbers(path) == [0, 1, 2]
    assert len(list(read_metrics(f"{path}.1"))) == 20
