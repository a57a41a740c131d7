from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botperf import BotperfError, MetricsFileError, MetricsFileNotFoundError, read_metrics

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
    with pytest.raises(MetricsFileError, match=r"m\.jsonl, line 2: not valid JSON") as info:
        list(read_metrics(path))
    assert info.value.line_number == 2
    assert info.value.path == str(path)


def test_non_object_line_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", "[1, 2]\n")
    with pytest.raises(MetricsFileError, match="expected a JSON object, found list"):
        list(read_metrics(path))


def test_missing_file_raises_at_once(tmp_path: Path) -> None:
    with pytest.raises(MetricsFileNotFoundError, match="no metrics file at") as info:
        read_metrics(tmp_path / "absent.jsonl")
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, BotperfError)


def test_directory_is_not_a_metrics_file(tmp_path: Path) -> None:
    with pytest.raises(MetricsFileNotFoundError):
        read_metrics(tmp_path)
