"""The HTML report in a real headless Chromium: it renders its charts, and looks like something.

Skipped when ``chromium`` is not installed, unless ``BOTPERF_REQUIRE_CHROMIUM=1`` (as in CI),
which turns the absence into a failure.
"""

from __future__ import annotations

import html
import json
import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from botperf._cli import main

START = 1_732_438_800.0  # 2024-11-24 09:00 UTC


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("BOTPERF_REQUIRE_CHROMIUM") == "1":
            pytest.fail("BOTPERF_REQUIRE_CHROMIUM=1 but there is no chromium on PATH")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def run_chromium(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,  # a safety net: it takes about a second
    )


@pytest.fixture
def report_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    rng = random.Random(6)
    lines = []
    for index in range(1500):
        ts = START + index * 2.4
        lines.append({"ts": ts, "event": "llm_call", "latency_ms": rng.lognormvariate(6.5, 0.4)})
        if index % 3 == 0:
            lines.append({"ts": ts, "event": "cache.get", "seconds": rng.expovariate(2000.0)})
    source = tmp_path / "metrics.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    page = tmp_path / "report.html"
    assert main(["report", str(source), "--html", str(page)]) == 0
    capsys.readouterr()
    return page


def png_scanlines(png: bytes) -> tuple[int, int, bytes]:
    """Return (width, height, the filtered scanlines) of an 8-bit RGB or RGBA PNG."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    position, idat, header = 8, b"", b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        data = png[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        position += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", header[:10])
    channels = {2: 3, 6: 4}[color_type]
    assert depth == 8
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * channels)
    return width, height, raw


def looks_blank(raw: bytes, height: int) -> bool:
    """Whether an image's filtered scanlines are all alike: a blank or one-colour page.

    A one-colour image filters to the same few bytes on every row; text and charts give
    rows that differ and a wide spread of byte values.
    """
    row = len(raw) // height
    distinct_rows = len({raw[i * row : (i + 1) * row] for i in range(height)})
    return distinct_rows < 50 or len(set(raw)) < 64


def test_chromium_renders_a_chart_pair_per_timing_field(
    chromium: str, report_page: Path, tmp_path: Path
) -> None:
    # A copy of the page with a probe script that writes the charts' layout into the DOM;
    # the report itself carries no script.
    probe = report_page.with_name("probe.html")
    probe.write_text(
        report_page.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>document.body.dataset.layout = JSON.stringify("
            "[...document.querySelectorAll('svg.chart')].map(svg => {"
            "const box = svg.getBoundingClientRect();"
            "return {kind: svg.classList[1], width: box.width, height: box.height,"
            " bars: svg.querySelectorAll('rect.bar').length,"
            " lines: svg.querySelectorAll('path').length}; }));</script></body>",
        ),
        encoding="utf-8",
    )
    dom = run_chromium(chromium, tmp_path, "--dump-dom", probe.as_uri()).stdout
    assert "<h1>botperf report:" in dom
    layout_attribute = dom.split('data-layout="', 1)[1].split('"', 1)[0]
    charts = json.loads(html.unescape(layout_attribute))
    assert [chart["kind"] for chart in charts] == [
        "chart-time",
        "chart-histogram",
        "chart-time",
        "chart-histogram",
    ]
    for chart in charts:
        assert chart["width"] > 300
        assert chart["height"] > 150
    assert all(chart["bars"] > 5 for chart in charts if chart["kind"] == "chart-histogram")
    assert all(chart["lines"] == 2 for chart in charts if chart["kind"] == "chart-time")


def test_chromium_screenshot_of_the_report_is_not_blank(
    chromium: str, report_page: Path, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    shots = {}
    for name, page in (("report", report_page), ("blank", blank)):
        shot = tmp_path / f"{name}.png"
        run_chromium(
            chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()
        )
        shots[name] = png_scanlines(shot.read_bytes())
    width, height, raw = shots["report"]
    assert (width, height) == (1280, 2000)
    assert not looks_blank(raw, height)
    # The same check does call a blank page blank.
    _, blank_height, blank_raw = shots["blank"]
    assert looks_blank(blank_raw, blank_height)
