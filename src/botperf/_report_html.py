"""The HTML page of `botperf report`: one self-contained file with SVG charts.

It needs no network and no JavaScript: the charts are inline SVG drawn here, per event
and timing field, its values over time (dots, and p50/p99 lines per time slice) and a
histogram marked with p50 and p99.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone

from ._report_data import Report, Series, nearest_rank
from ._report_text import (
    COLUMNS,
    event_line,
    field_rows,
    format_number,
    format_span,
    headline,
    plural,
    untimed_note,
)

__all__ = ["CHART_LIMIT", "render_html"]

#: The largest magnitude of a value the charts draw: beyond it, their arithmetic
#: (spans, round ticks) would overflow floats.
CHART_LIMIT = 1e300

_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
_TIME_STEPS_LONG = (43200, 86400, 172800, 604800)
_WIDTH, _HEIGHT = 600, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 20, 30, 52
_MAX_DOTS = 3000
# Spans below this are drawn as no span: tick steps of subnormal floats underflow to 0.
_TINY = 1e-300
_HISTOGRAM_BINS = 40

_CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; }
* { box-sizing: border-box; }
body { margin: 0; padding: 32px 40px; font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: #f5f7fa; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: var(--muted); }
section.event { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 20px 24px; margin: 24px 0; box-shadow: 0 1px 3px rgba(15, 23, 42, .06); }
section.event h2 { margin: 0; font-size: 20px; font-family: ui-monospace, Menlo, Consolas,
  monospace; }
p.summary { margin: 2px 0 14px; color: var(--muted); }
table { border-collapse: collapse; margin-bottom: 12px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 14px; text-align: right; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; padding-left: 0; }
th { color: var(--muted); font-weight: 600; font-size: 13px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr));
  gap: 16px; margin-top: 8px; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; height: auto; background: #fff; }
svg .axis { stroke: #9aa5b1; stroke-width: 1; }
svg .grid { stroke: #eef2f6; stroke-width: 1; }
svg text { font: 12px system-ui, sans-serif; fill: #52606d; }
svg text.label { font-size: 13px; fill: #323f4b; }
svg .dot { fill: #3e7bfa; fill-opacity: .35; }
svg .line-p50 { fill: none; stroke: #1d4ed8; stroke-width: 2; }
svg .line-p99 { fill: none; stroke: #ea580c; stroke-width: 2; }
svg .bar { fill: #60a5fa; }
svg .marker { stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .marker-p50 { stroke: #1d4ed8; }
svg .marker-p99 { stroke: #ea580c; }
p.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 13px; margin-top: 24px; }
"""


def _nice_step(span: float, target: int) -> float:
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10.0 * magnitude


def _value_range(low: float, high: float) -> tuple[float, float, list[float]]:
    """Widen [low, high] to round tick values; return (bottom, top, ticks)."""
    if not high - low > _TINY:
        # Equal values, or too close to tell apart: a span of about a tenth of them.
        pad = abs(high) * 0.1
        if not pad > _TINY:
            pad = 1.0
        low, high = low - pad, high + pad
        low = max(low, 0.0) if high > 0 else low
    step = _nice_step(high - low, 5)
    bottom = math.floor(low / step) * step
    top = math.ceil(high / step) * step
    ticks = [bottom + i * step for i in range(round((top - bottom) / step) + 1)]
    return bottom, top, ticks


def _time_ticks(first: float, last: float) -> tuple[list[float], str]:
    span = last - first
    step = next(
        (s for s in (*_TIME_STEPS, *_TIME_STEPS_LONG) if span / s <= 6),
        _nice_step(span / 86400, 6) * 86400,
    )
    start = math.ceil(first / step) * step
    ticks = []
    tick = start
    while tick <= last + 1e-9:
        ticks.append(tick)
        tick += step
    if span >= 86400:
        pattern = "%m-%d %H:%M"
    elif step >= 60:
        pattern = "%H:%M"
    else:
        pattern = "%H:%M:%S"
    return ticks, pattern


def _svg_open(kind: str, title: str) -> list[str]:
    return [
        f'<svg class="chart chart-{kind}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img">',
        f"<title>{html.escape(title)}</title>",
    ]


def _y_axis(ticks: list[float], y_of: Callable[[float], float], label: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{format_number(tick)}</text>'
        )
    middle = (_TOP + _HEIGHT - _BOTTOM) / 2
    parts.append(
        f'<text class="label" transform="translate(16 {middle:.1f}) rotate(-90)" '
        f'text-anchor="middle">{html.escape(label)}</text>'
    )
    return parts


def _frame(x_label: str) -> list[str]:
    bottom = _HEIGHT - _BOTTOM
    return [
        f'<line class="axis" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{bottom}" y2="{bottom}"/>',
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}"/>',
        f'<text class="label" x="{(_LEFT + _WIDTH - _RIGHT) / 2:.1f}" y="{_HEIGHT - 10}" '
        f'text-anchor="middle">{html.escape(x_label)}</text>',
    ]


def _legend(entries: Iterable[tuple[str, str]]) -> list[str]:
    parts = []
    x = _WIDTH - _RIGHT
    for css_class, label in reversed(list(entries)):
        x -= 8 + 7 * len(label)
        parts.append(f'<text x="{x}" y="{_TOP - 10}">{html.escape(label)}</text>')
        x -= 22
        if css_class == "dot":
            parts.append(f'<circle class="dot" cx="{x + 9}" cy="{_TOP - 14}" r="3"/>')
        else:
            parts.append(
                f'<line class="{css_class}" x1="{x}" x2="{x + 18}" '
                f'y1="{_TOP - 14}" y2="{_TOP - 14}"/>'
            )
        x -= 12
    return parts


def _time_chart(
    name: str, key: str, unit: str, times: Sequence[float], values: Sequence[float]
) -> str:
    first, last = min(times), max(times)
    if last - first < 1.0:
        first, last = first - 0.5, last + 0.5
    bottom, top, y_ticks = _value_range(min(0.0, min(values)), max(values))
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM

    def x_of(ts: float) -> float:
        return _LEFT + (ts - first) / (last - first) * plot_w

    def y_of(value: float) -> float:
        return _TOP + (top - value) / (top - bottom) * plot_h

    label = f"{key} ({unit})"
    parts = _svg_open("time", f"{name}: {label} over time")
    parts += _y_axis(y_ticks, y_of, label)
    ticks, pattern = _time_ticks(first, last)
    for tick in ticks:
        x = x_of(tick)
        stamp = datetime.fromtimestamp(tick, timezone.utc).strftime(pattern)
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" '
            f'y1="{_HEIGHT - _BOTTOM}" y2="{_HEIGHT - _BOTTOM + 5}"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{_HEIGHT - _BOTTOM + 19}" text-anchor="middle">{stamp}</text>'
        )
    parts += _frame("time (UTC)")
    if len(values) <= _MAX_DOTS:
        parts.extend(
            f'<circle class="dot" cx="{x_of(t):.1f}" cy="{y_of(v):.1f}" r="2.2"/>'
            for t, v in zip(times, values, strict=True)
        )
    bins = max(1, min(60, len(values) // 10))
    width = (last - first) / bins
    grouped: list[list[float]] = [[] for _ in range(bins)]
    for t, v in zip(times, values, strict=True):
        grouped[min(bins - 1, int((t - first) / width))].append(v)
    legend = [("dot", "each event")] if len(values) <= _MAX_DOTS else []
    for label_text, fraction in (("p50", 0.5), ("p99", 0.99)):
        commands = []
        pen_up = True
        for index, group in enumerate(grouped):
            if not group:
                pen_up = True
                continue
            value = nearest_rank(sorted(group), fraction)
            x = x_of(first + (index + 0.5) * width)
            commands.append(f"{'M' if pen_up else 'L'}{x:.1f} {y_of(value):.1f}")
            pen_up = False
        if bins > 1:
            parts.append(f'<path class="line-{label_text}" d="{" ".join(commands)}"/>')
            legend.append((f"line-{label_text}", f"{label_text} per {format_span(width)}"))
    parts += _legend(legend)
    parts.append("</svg>")
    return "\n".join(parts)


def _histogram(name: str, key: str, unit: str, values: Sequence[float]) -> str:
    ordered = sorted(values)
    low = ordered[0] if ordered[0] > 0.25 * ordered[-1] else min(0.0, ordered[0])
    bottom, top, x_ticks = _value_range(low, ordered[-1])
    counts = [0] * _HISTOGRAM_BINS
    width = (top - bottom) / _HISTOGRAM_BINS
    for value in ordered:
        counts[min(_HISTOGRAM_BINS - 1, int((value - bottom) / width))] += 1
    _, count_top, y_ticks = _value_range(0.0, max(counts))
    y_ticks = [tick for tick in y_ticks if tick == int(tick)]
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM

    def x_of(value: float) -> float:
        return _LEFT + (value - bottom) / (top - bottom) * plot_w

    def y_of(count: float) -> float:
        return _TOP + (count_top - count) / count_top * plot_h

    label = f"{key} ({unit})"
    parts = _svg_open("histogram", f"{name}: distribution of {label}")
    parts += _y_axis(y_ticks, y_of, "events")
    for tick in x_ticks:
        x = x_of(tick)
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" '
            f'y1="{_HEIGHT - _BOTTOM}" y2="{_HEIGHT - _BOTTOM + 5}"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{_HEIGHT - _BOTTOM + 19}" text-anchor="middle">'
            f"{format_number(tick)}</text>"
        )
    parts += _frame(label)
    bar_w = plot_w / _HISTOGRAM_BINS
    for index, count in enumerate(counts):
        if count:
            y = y_of(count)
            parts.append(
                f'<rect class="bar" x="{_LEFT + index * bar_w + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(bar_w - 1, 0.5):.1f}" height="{_HEIGHT - _BOTTOM - y:.1f}">'
                f"<title>{format_number(bottom + index * width)} to "
                f"{format_number(bottom + (index + 1) * width)} {unit}: "
                f"{count:,} events</title></rect>"
            )
    legend = []
    for label_text, fraction in (("p50", 0.5), ("p99", 0.99)):
        value = nearest_rank(ordered, fraction)
        x = x_of(value)
        parts.append(
            f'<line class="marker marker-{label_text}" x1="{x:.1f}" x2="{x:.1f}" '
            f'y1="{_TOP}" y2="{_HEIGHT - _BOTTOM}"/>'
        )
        legend.append(
            (f"marker marker-{label_text}", f"{label_text} {format_number(value)} {unit}")
        )
    parts += _legend(legend)
    parts.append("</svg>")
    return "\n".join(parts)


def _charts(name: str, key: str, series: Series) -> list[str]:
    """Return the HTML of one field's charts: over time, and its distribution."""
    times: list[float] = []
    timed_values: list[float] = []
    values: list[float] = []
    for ts, value in zip(series.times, series.values, strict=True):
        if abs(value) <= CHART_LIMIT:
            values.append(value)
            if not math.isnan(ts):
                times.append(ts)
                timed_values.append(value)
    caption = html.escape(key)
    parts = ['<div class="charts">']
    if times:
        parts.append(
            f"<figure><figcaption>{caption} over time</figcaption>"
            f"{_time_chart(name, key, series.unit, times, timed_values)}</figure>"
        )
    if values:
        parts.append(
            f"<figure><figcaption>{caption} distribution</figcaption>"
            f"{_histogram(name, key, series.unit, values)}</figure>"
        )
    parts.append("</div>")
    left_out = len(series.values) - len(values)
    if left_out:
        parts.append(
            f'<p class="empty">{plural(left_out, "value")} of {caption} beyond '
            f"&plusmn;{CHART_LIMIT:.0e} left out of these charts.</p>"
        )
    return parts


def render_html(report: Report) -> str:
    """Return the report as one self-contained HTML page with inline SVG charts."""
    title = f"botperf report: {report.path}"
    body = [
        "<header>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(headline(report))}</p>",
    ]
    note = untimed_note(report)
    if note:
        body.append(f"<p>{html.escape(note)}</p>")
    body.append("</header>")
    if not report.events:
        body.append('<p class="empty">No events to show.</p>')
    for event in report.events:
        body.append('<section class="event">')
        body.append(f"<h2>{html.escape(event.name)}</h2>")
        body.append(f'<p class="summary">{html.escape(event_line(report, event))}</p>')
        rows = field_rows(event)
        if not rows:
            body.append(
                '<p class="empty">No timing fields: none ends in _ms or is named seconds '
                "or duration.</p>"
            )
        else:
            body.append("<table><thead><tr>")
            body.extend(f"<th>{html.escape(column)}</th>" for column in COLUMNS)
            body.append("</tr></thead><tbody>")
            for row in rows:
                cells = "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
                body.append(f"<tr>{cells}</tr>")
            body.append("</tbody></table>")
        for key, series in event.series.items():
            body.extend(_charts(event.name, key, series))
        body.append("</section>")
    body.append(
        "<footer>Generated by <code>botperf report</code>. Percentiles are exact, "
        "nearest rank; times are UTC.</footer>"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
