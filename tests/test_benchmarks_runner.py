"""The benchmark runner's plumbing: tables, targets, JSON, Markdown and charts.

These tests check behaviour only; they never judge a measured time.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from benchmarks import __main__ as runner
from benchmarks._harness import Measurement, Report, ScalingChart, Target, ns_per_op


def fake_run(quick: bool) -> Report:
    report = Report(
        name="fake: a benchmark",
        charts=[ScalingChart("lookup by size", "lookup,", "size", "items")],
    )
    for size in (10, 100):
        data = list(range(size))
        items = set(data)
        report.measurements += [
            Measurement(
                f"lookup, {size} items",
                "list scan",
                "ns/op",
                ns_per_op(lambda data=data: -1 in data, number=10, repeat=3),
                baseline=True,
                params={"size": size},
            ),
            Measurement(
                f"lookup, {size} items",
                "botperf set",
                "ns/op",
                ns_per_op(lambda items=items: -1 in items, number=10, repeat=3),
                params={"size": size},
            ),
        ]
    report.measurements.append(Measurement("fixed", "botperf", "B", (1.0, 2.0, 3.0)))
    report.targets += [
        Target("small enough", measured=1.0, target=2.0, unit="x"),
        Target("big enough", measured=1.0, target=2.0, unit="x", higher_is_better=True),
    ]
    report.notes.append("quick" if quick else "full")
    return report


@pytest.fixture
def fake_benchmark(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("benchmarks.fake")
    module.run = fake_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.fake", module)
    monkeypatch.setattr(runner, "MODULES", ["fake"])
    return "fake"


def test_target_holds_in_the_stated_direction() -> None:
    assert Target("t", measured=1.0, target=2.0, unit="x").holds
    assert not Target("t", measured=3.0, target=2.0, unit="x").holds
    assert Target("t", measured=3.0, target=2.0, unit="x", higher_is_better=True).holds


def test_prints_medians_ratios_and_target_verdicts(
    fake_benchmark: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "lookup, 10 items" in out
    assert "1.00x list scan" in out
    assert "[holds ] small enough" in out
    assert "[MISSED] big enough" in out
    assert "1 targets hold, 1 missed" in out


def test_saves_json_with_environment_and_medians(fake_benchmark: str, tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    runner.main(["--quick", "--json", str(path)])
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["quick"] is True
    assert document["environment"]["cpu_count"] >= 1
    assert document["environment"]["packages"]["botperf"]
    (report,) = document["reports"]
    fixed = next(m for m in report["measurements"] if m["group"] == "fixed")
    assert (fixed["median"], fixed["min"], fixed["max"]) == (2.0, 1.0, 3.0)
    assert [t["holds"] for t in report["targets"]] == [True, False]


def test_draws_charts_and_links_them_from_the_markdown(fake_benchmark: str, tmp_path: Path) -> None:
    charts = tmp_path / "charts"
    markdown = tmp_path / "results.md"
    runner.main(["--quick", "--charts", str(charts), "--markdown", str(markdown)])
    drawn = sorted(path.name for path in charts.glob("*.svg"))
    # One scaling chart for the "lookup," groups, one bar chart for the other group.
    assert drawn == ["fake-a-benchmark-fixed.svg", "fake-a-benchmark-lookup-by-size.svg"]
    assert all("<svg" in (charts / name).read_text(encoding="utf-8") for name in drawn)
    text = markdown.read_text(encoding="utf-8")
    assert "![lookup by size](" in text
    assert "| **botperf set** |" in text
    assert "| big enough | 1 x | >= 2 x | **missed** |" in text


def test_unknown_benchmark_is_a_usage_error(
    fake_benchmark: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["nope"])
    assert exit_info.value.code == 2
    assert "unknown benchmark nope; choose from fake" in capsys.readouterr().err
