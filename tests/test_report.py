from __future__ import annotations

import argparse
import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from permissions import unreadable_file

from botperf._cli import main, parse_since

START = datetime(2024, 11, 24, 9, 0, tzinfo=timezone.utc).timestamp()


def write_events(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    return path


@pytest.fixture
def metrics_file(tmp_path: Path) -> Path:
    llm_calls: list[dict[str, object]] = [
        {
            "ts": START + index,
            "event": "llm_call",
            "channel": 1,
            "latency_ms": float(index + 1),
            "tokens": 240,
            "error": index % 10 == 0,
        }
        for index in range(100)
    ]
    cache_gets: list[dict[str, object]] = [
        {"ts": START + 10 * index, "event": "cache.get", "seconds": 0.25 * (index + 1)}
        for index in range(4)
    ]
    startup = {"ts": START + 50, "event": "startup", "duration": 1.5, "ok": True}
    events = [*llm_calls, *cache_gets, startup]
    return write_events(tmp_path / "metrics.jsonl", events)


def report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["report", *args]) == 0
    return capsys.readouterr().out


def table_row(text: str, field: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.strip().startswith(field))
    return line.split()


def test_report_prints_count_rate_and_exact_percentiles_per_event(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(capsys, str(metrics_file))
    # 105 events over 99 seconds.
    assert "105 events, 2024-11-24 09:00:00 UTC to 2024-11-24 09:01:39 UTC (1m 39s)" in out
    assert "llm_call: 100 events, 1.01/s, 10 errors" in out
    assert table_row(out, "latency_ms") == ["latency_ms", "(ms)", "100", "50", "90", "99", "100"]
    assert "cache.get: 4 events, 0.0404/s" in out
    assert table_row(out, "seconds") == ["seconds", "(s)", "4", "0.5", "1", "1", "1"]
    assert table_row(out, "duration") == ["duration", "(s)", "1", "1.5", "1.5", "1.5", "1.5"]


def test_report_shows_only_timing_fields(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(capsys, str(metrics_file))
    for other in ("tokens", "channel", "ts (", "error (", "ok ("):
        assert other not in out


def test_report_lists_events_in_name_order(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(capsys, str(metrics_file))
    headings = re.findall(r"^(\S+): \d+ events?,", out, re.MULTILINE)
    assert headings[1:] == ["cache.get", "llm_call", "startup"]


def test_an_event_without_timing_fields_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(tmp_path / "m.jsonl", [{"ts": START, "event": "boot", "tokens": 3}])
    out = report(capsys, str(path))
    assert "boot: 1 event, - (the events span no time)" in out
    assert "(no timing fields" in out


def test_event_filter_keeps_only_the_named_events(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(capsys, str(metrics_file), "--event", "cache.get", "startup")
    assert "llm_call" not in out
    assert "cache.get: 4 events" in out
    assert "startup: 1 event," in out
    # The rate is still over the file's time span.
    assert "cache.get: 4 events, 0.0404/s" in out


def test_event_filter_is_repeatable(metrics_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(capsys, str(metrics_file), "--event", "startup", "--event", "llm_call")
    assert "cache.get" not in out
    assert "llm_call: 100 events" in out


def test_since_a_relative_duration_counts_back_from_the_newest_event(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The newest event is at START + 99; 9 seconds back keeps START + 90 ... START + 99.
    out = report(capsys, str(metrics_file), "--since", "9s", "--event", "llm_call")
    assert "llm_call: 10 events, 1.111/s, 1 error" in out
    assert table_row(out, "latency_ms")[2:] == ["10", "95", "99", "100", "100"]


def test_since_an_iso_time_keeps_events_from_then_on(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(capsys, str(metrics_file), "--since", "2024-11-24T09:01:00Z")
    assert "llm_call: 40 events" in out
    assert "cache.get" not in out
    assert "startup" not in out


def test_since_after_every_event_reports_no_events(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(capsys, str(metrics_file), "--since", "2030-01-01")
    assert out.strip() == f"{metrics_file}: no events since 2030-01-01"


def test_an_unparsable_since_is_a_usage_error(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(metrics_file), "--since", "yesterday"])
    assert exit_info.value.code == 2
    assert "'yesterday' is neither an ISO-8601 time" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("1.5d", 129600.0)]
)
def test_parse_since_reads_relative_durations(text: str, seconds: float) -> None:
    assert parse_since(text).cutoff(10_000_000.0) == 10_000_000.0 - seconds


@pytest.mark.parametrize(
    "text", ["2024-11-24T09:00:00Z", "2024-11-24T09:00:00", "2024-11-24T10:00:00+01:00"]
)
def test_parse_since_reads_iso_times_as_utc_unless_an_offset_is_given(text: str) -> None:
    assert parse_since(text).cutoff(0.0) == START


def test_parse_since_rejects_other_text() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("10 minutes ago")


def test_a_missing_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "absent.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("botperf: error: no metrics file at")
    assert "absent.jsonl" in err


def test_a_non_json_line_is_a_clear_error_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"ts": 1, "event": "a"}\nnot json\n{"ts": 2, "event": "a"}\n')
    assert main(["report", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"botperf: error: {path}, line 2: not valid JSON" in err


def test_a_torn_last_line_is_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"ts": 1, "event": "a", "latency_ms": 5}\n{"ts": 2, "ev')
    with caplog.at_level(logging.WARNING):
        out = report(capsys, str(path))
    assert "a: 1 event," in out
    assert "torn last line" in caplog.text


def test_events_without_a_numeric_ts_or_a_string_event_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(
        tmp_path / "m.jsonl",
        [
            {"ts": START, "event": "a", "latency_ms": 1},
            {"ts": START + 1, "event": "a", "latency_ms": True},
            {"ts": "soon", "event": "a"},
            {"ts": START, "event": 3},
        ],
    )
    out = report(capsys, str(path))
    assert "skipped 2 without a numeric ts and a string event" in out
    assert "a: 2 events" in out
    assert table_row(out, "latency_ms")[2] == "1"


def test_an_empty_file_reports_no_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text("")
    assert report(capsys, str(path)).strip() == f"{path}: no events"


def test_html_report_is_one_self_contained_page_with_charts_per_field(
    metrics_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page_path = tmp_path / "report.html"
    out = report(capsys, str(metrics_file), "--html", str(page_path))
    assert "llm_call: 100 events" in out
    page = page_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('<svg class="chart chart-time"') == 3
    assert page.count('<svg class="chart chart-histogram"') == 3
    assert "latency_ms (ms)" in page
    assert "time (UTC)" in page
    assert "<script" not in page
    assert not re.search(r"""\b(src|href)=""", page)
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_html_report_escapes_names_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(
        tmp_path / "m.jsonl",
        [{"ts": START + i, "event": "<script>alert(1)</script>", "x_ms": i} for i in range(3)],
    )
    page_path = tmp_path / "report.html"
    report(capsys, str(path), "--html", str(page_path))
    page = page_path.read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_report_draws_percentile_lines_and_dots_or_only_lines_when_dense(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sparse = write_events(
        tmp_path / "sparse.jsonl",
        [{"ts": START + i, "event": "a", "x_ms": i % 7} for i in range(200)],
    )
    dense = write_events(
        tmp_path / "dense.jsonl",
        [{"ts": START + i / 10, "event": "a", "x_ms": i % 7} for i in range(4000)],
    )
    pages = []
    for source in (sparse, dense):
        report(capsys, str(source), "--html", str(tmp_path / "page.html"))
        pages.append((tmp_path / "page.html").read_text(encoding="utf-8"))
    assert 'class="dot"' in pages[0]
    assert 'class="dot"' not in pages[1]
    for page in pages:
        assert 'class="line-p50"' in page
        assert 'class="line-p99"' in page
        assert 'class="bar"' in page


def test_html_report_of_constant_values_and_a_single_instant_still_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(tmp_path / "m.jsonl", [{"ts": START, "event": "a", "seconds": 0.5}] * 3)
    report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert page.count('class="bar"') == 1
    assert "<svg" in page


def test_html_report_spanning_days_labels_dates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(
        tmp_path / "m.jsonl",
        [{"ts": START + i * 3600, "event": "a", "x_ms": i} for i in range(24 * 20)],
    )
    report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert re.search(r">11-2\d 00:00<", page)


def test_html_report_with_no_events_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text("")
    report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    assert "No events to show." in (tmp_path / "page.html").read_text(encoding="utf-8")


def test_non_finite_values_are_left_out_of_the_percentiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"ts": 1, "event": "a", "x_ms": 5}\n'
        '{"ts": 2, "event": "a", "x_ms": NaN}\n'
        '{"ts": 3, "event": "a", "x_ms": Infinity}\n'
    )
    out = report(capsys, str(path))
    assert "a: 3 events" in out
    assert table_row(out, "x_ms") == ["x_ms", "(ms)", "1", "5", "5", "5", "5"]


def test_html_percentile_lines_break_where_no_events_happened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    early = [{"ts": START + i, "event": "a", "x_ms": 1} for i in range(100)]
    late = [{"ts": START + 1000 + i, "event": "a", "x_ms": 2} for i in range(100)]
    path = write_events(tmp_path / "m.jsonl", [*early, *late])
    report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    p50_path = re.search(r'class="line-p50" d="([^"]*)"', page)
    assert p50_path is not None
    assert p50_path[1].count("M") == 2


def test_html_event_without_timing_fields_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(tmp_path / "m.jsonl", [{"ts": START, "event": "boot"}])
    report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "No timing fields" in page
    assert "<svg" not in page


def error_line(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``botperf report`` expecting exit status 1; return its one line on stderr."""
    assert main(["report", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("botperf: error: ")
    assert err.count("\n") == 1
    assert err.endswith("\n")
    return err


def test_timestamps_in_milliseconds_are_counted_and_left_out_of_the_time_span(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(
        tmp_path / "m.jsonl",
        [{"ts": START * 1000 + i, "event": "a", "x_ms": i + 1} for i in range(4)],
    )
    out = report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    assert f"{path}: 4 events, none at a plausible time" in out
    assert (
        "left 4 events out of the time span and the charts over time: their ts is no Unix "
        "time in seconds from 1970 to 9999 (milliseconds?)"
    ) in out
    assert "a: 4 events, - (the events span no time)" in out
    assert table_row(out, "x_ms") == ["x_ms", "(ms)", "4", "2", "4", "4", "4"]
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert 'class="chart chart-time"' not in page
    assert page.count('class="chart chart-histogram"') == 1
    assert "left 4 events out of the time span" in page


@pytest.mark.parametrize("bad_ts", [1e300, -1e15, 1.7e12, -1.0])
def test_events_at_an_implausible_time_leave_the_rest_of_the_report_intact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_ts: float
) -> None:
    good = [{"ts": START + i, "event": "a", "x_ms": 1} for i in range(10)]
    path = write_events(tmp_path / "m.jsonl", [*good, {"ts": bad_ts, "event": "a", "x_ms": 9}])
    out = report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    assert "11 events, 2024-11-24 09:00:00 UTC to 2024-11-24 09:00:09 UTC (9s)" in out
    assert "left 1 event out of the time span and the charts over time" in out
    assert table_row(out, "x_ms")[2:] == ["11", "1", "1", "9", "9"]
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert page.count('class="chart chart-time"') == 1
    assert page.count('class="dot"') == 10 + 1  # the events over time, and the legend's


def test_since_leaves_out_the_events_at_an_implausible_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(
        tmp_path / "m.jsonl",
        [
            {"ts": START, "event": "a", "x_ms": 1},
            {"ts": START + 10, "event": "a", "x_ms": 2},
            {"ts": 1e300, "event": "a", "x_ms": 3},
        ],
    )
    out = report(capsys, str(path), "--since", "5s")
    assert "a: 1 event," in out
    assert "left 1 event out of the report (--since needs their time)" in out


def test_values_near_the_float_limit_are_tabled_and_left_out_of_the_charts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [1e308, -1e308, 5.0, 7.0]
    path = write_events(
        tmp_path / "m.jsonl",
        [{"ts": START + i, "event": "a", "x_ms": value} for i, value in enumerate(values)],
    )
    out = report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    assert table_row(out, "x_ms") == ["x_ms", "(ms)", "4", "5", "1e+308", "1e+308", "1e+308"]
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert page.count('class="chart chart-time"') == 1
    assert page.count('class="chart chart-histogram"') == 1
    assert "2 values of x_ms beyond &plusmn;1e+300 left out of these charts." in page
    assert "inf" not in page.lower().replace("infinity", "")


def test_only_values_near_the_float_limit_draw_no_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(tmp_path / "m.jsonl", [{"ts": START, "event": "a", "x_ms": 1e308}])
    report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "<svg" not in page
    assert "1 value of x_ms beyond" in page


def test_an_int_too_large_for_a_float_is_left_out_like_a_non_finite_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.jsonl"
    huge = "9" * 400
    path.write_text(
        f'{{"ts": {START}, "event": "a", "x_ms": 5}}\n'
        f'{{"ts": {START}, "event": "a", "x_ms": {huge}}}\n'
        f'{{"ts": {huge}, "event": "a", "x_ms": 5}}\n'
    )
    out = report(capsys, str(path))
    assert "skipped 1 without a numeric ts and a string event" in out
    assert table_row(out, "x_ms")[2] == "1"


def test_names_with_lone_surrogates_are_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(f'{{"ts": {START}, "event": "bad\\ud800name", "x\\udfff_ms": 1}}\n')
    out = report(capsys, str(path), "--html", str(tmp_path / "page.html"))
    assert "bad\\ud800name: 1 event" in out
    assert "x\\udfff_ms (ms)" in out
    assert "bad\\ud800name" in (tmp_path / "page.html").read_text(encoding="utf-8")


@given(
    rows=st.lists(
        st.tuples(
            st.floats(allow_nan=False) | st.integers(min_value=-(10**20), max_value=10**20),
            st.floats() | st.integers(min_value=-(10**400), max_value=10**400),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_numbers_make_a_report_and_a_page(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[float, float]]
) -> None:
    folder = tmp_path_factory.mktemp("any")
    path = folder / "m.jsonl"
    with path.open("w", encoding="utf-8") as file:
        for ts, value in rows:
            file.write(json.dumps({"ts": ts, "event": "a", "x_ms": value}) + "\n")
    assert main(["report", str(path), "--html", str(folder / "page.html")]) == 0
    page = (folder / "page.html").read_text(encoding="utf-8")
    assert page.endswith("</html>\n")


def test_an_html_path_in_a_missing_folder_is_one_line_before_any_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "no-such-folder" / "page.html"
    err = error_line(capsys, str(tmp_path / "absent.jsonl"), "--html", str(page))
    assert err == (
        f"botperf: error: {page}: cannot write the HTML page: there is no directory {page.parent}\n"
    )


def test_an_html_path_that_is_a_folder_is_one_line(
    metrics_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_line(capsys, str(metrics_file), "--html", str(tmp_path))
    assert err == f"botperf: error: {tmp_path}: cannot write the HTML page: it is a directory\n"


def test_an_html_path_under_a_file_is_one_line(
    metrics_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    page = tmp_path / "file" / "page.html"
    err = error_line(capsys, str(metrics_file), "--html", str(page))
    assert err.startswith(f"botperf: error: {page}: cannot write the HTML page: ")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_html_page_on_a_full_disk_is_one_line_after_the_tables(
    metrics_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # /dev/full refuses every write with ENOSPC, as a full disk does, for root too.
    assert main(["report", str(metrics_file), "--html", "/dev/full"]) == 1
    captured = capsys.readouterr()
    assert "llm_call: 100 events" in captured.out
    assert captured.err == (
        "botperf: error: /dev/full: cannot write the HTML page: No space left on device\n"
    )


def test_a_metrics_file_it_may_not_read_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with unreadable_file(b'{"ts": 1, "event": "a"}\n') as path:
        err = error_line(capsys, str(path))
    assert err == f"botperf: error: {path}: cannot read the metrics file: Permission denied\n"


def test_a_folder_given_as_the_metrics_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_line(capsys, str(tmp_path))
    assert "no metrics file at" in err


def test_a_deeply_nested_line_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(f'{{"ts": {START}, "event": "a"}}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    err = error_line(capsys, str(path))
    assert f"{path}, line 2: its arrays or objects are nested too deeply to parse" in err
