"""``botperf report``: latency tables and a self-contained HTML page from a metrics file.

The HTML page needs no network and no JavaScript: its charts are SVG drawn here.
"""

from __future__ import annotations

import argparse
import errno
import html
import math
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._reader import read_metrics

__all__ = ["add_report_parser", "parse_since"]

#: Percentiles the report shows, as (label, fraction); nearest-rank convention.
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
_TIME_STEPS_LONG = (43200, 86400, 172800, 604800)

#: The Unix times (seconds) the report takes as plausible: from 1970 to the last day
#: `datetime` can show. Milliseconds since 1970 and garbage fall outside.
PLAUSIBLE_TS = (0.0, 253402214400.0)

#: The largest magnitude of a value the charts draw: beyond it, their arithmetic
#: (spans, round ticks) would overflow floats.
CHART_LIMIT = 1e300


def field_unit(name: str) -> str | None:
    """Return the unit of a timing field (``"ms"`` or ``"s"``), ``None`` if not one."""
    if name.endswith("_ms"):
        return "ms"
    if name in ("seconds", "duration"):
        return "s"
    return None


@dataclass(frozen=True)
class Since:
    """A ``--since`` bound: an absolute Unix time, or seconds before the newest event."""

    text: str
    timestamp: float | None = None
    before_newest: float | None = None

    def cutoff(self, newest: float) -> float:
        """Return the earliest Unix time kept, given the newest event's time."""
        if self.timestamp is not None:
            return self.timestamp
        return newest - (self.before_newest or 0.0)


def parse_since(text: str) -> Since:
    """Parse ``--since``: ISO-8601 (UTC when no offset is given) or ``30s``/``10m``/``2h``/``1d``.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is neither (a usage error).
    """
    match = _RELATIVE.match(text)
    if match:
        return Since(text, before_newest=float(match[1]) * _UNIT_SECONDS[match[2]])
    iso = text.strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO-8601 time (2024-11-24T10:30:00Z) "
            "nor a duration before the newest event (30s, 10m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return Since(text, timestamp=moment.timestamp())


def add_report_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` subcommand to the ``botperf`` command line."""
    parser = subparsers.add_parser(
        "report",
        help="summarise a metrics file: latency tables, and charts with --html",
        description=(
            "Print a table per event name of a JSON-lines metrics file: count, rate, and "
            "p50/p90/p99/max of every numeric field ending in _ms or named seconds or "
            "duration (taken as seconds). Percentiles are exact (nearest rank)."
        ),
    )
    parser.add_argument("path", help="the metrics file (JSON lines, as BatchMetricsWriter writes)")
    parser.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained HTML page with charts to FILE",
    )
    parser.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        help=(
            "only events at or after WHEN: an ISO-8601 time (UTC unless it has an offset) "
            "or a duration before the newest event in the file, like 30s, 10m, 2h or 1d"
        ),
    )
    parser.add_argument(
        "--event",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="only these event names (repeatable)",
    )
    parser.set_defaults(handler=run_report)


def _floats() -> array[float]:
    return array("d")


@dataclass
class _Series:
    """One timing field of one event name: (time, value) pairs in file order."""

    unit: str
    times: array[float] = field(default_factory=_floats)
    values: array[float] = field(default_factory=_floats)


@dataclass
class _Event:
    """Everything the report shows about one event name, kept in compact arrays."""

    name: str
    times: array[float] = field(default_factory=_floats)
    failed: array[int] = field(default_factory=lambda: array("b"))
    series: dict[str, _Series] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.times)

    @property
    def errors(self) -> int:
        return sum(self.failed)

    def since(self, cutoff: float) -> _Event:
        """Return the part of this event at or after ``cutoff`` (Unix seconds)."""
        kept = _Event(self.name)
        for ts, failed in zip(self.times, self.failed, strict=True):
            if ts >= cutoff:
                kept.times.append(ts)
                kept.failed.append(failed)
        for key, series in self.series.items():
            kept_series = _Series(series.unit)
            for ts, value in zip(series.times, series.values, strict=True):
                if ts >= cutoff:
                    kept_series.times.append(ts)
                    kept_series.values.append(value)
            if kept_series.times:
                kept.series[key] = kept_series
        return kept


@dataclass
class _Report:
    path: str
    events: list[_Event]
    first: float | None
    last: float | None
    skipped: int
    since: Since | None
    untimed: int = 0

    @property
    def total(self) -> int:
        return sum(event.count for event in self.events)

    @property
    def span(self) -> float:
        """Seconds from the first to the last event kept (0.0 when none was)."""
        return (self.last or 0.0) - (self.first or 0.0)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            return None
        if math.isfinite(number):
            return number
    return None


def _printable(text: str) -> str:
    """Return ``text`` with any lone surrogate (JSON allows them) as a backslash escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _load(path: str, since: Since | None, names: Sequence[str] | None) -> _Report:
    # One pass, keeping only numbers: 8 bytes per event, 16 per timing value. A relative
    # --since needs the newest time, known only at the end, so filtering comes last.
    # An implausible ts is kept as NaN: such an event counts, but it is in no time span,
    # no chart over time, and never at or after a --since cutoff.
    wanted = None if names is None else set(names)
    every_ts = _floats()
    events: dict[str, _Event] = {}
    skipped = untimed = 0
    earliest, latest = PLAUSIBLE_TS
    for fields in read_metrics(path):
        ts = _number(fields.get("ts"))
        name = fields.get("event")
        if ts is None or not isinstance(name, str):
            skipped += 1
            continue
        plausible = earliest <= ts < latest
        if plausible:
            every_ts.append(ts)
        if wanted is not None and name not in wanted:
            continue
        if not plausible:
            untimed += 1
            ts = math.nan
        event = events.get(name)
        if event is None:
            event = events[name] = _Event(_printable(name))
        event.times.append(ts)
        event.failed.append(fields.get("error") is True)
        for key, raw in fields.items():
            unit = field_unit(key)
            value = _number(raw)
            if unit is None or value is None:
                continue
            series = event.series.get(key)
            if series is None:
                series = event.series[key] = _Series(unit)
            series.times.append(ts)
            series.values.append(value)
    first = last = None
    ordered = [events[name] for name in sorted(events)]
    for event in ordered:
        event.series = {_printable(key): series for key, series in event.series.items()}
    if every_ts:
        cutoff = since.cutoff(max(every_ts)) if since else -math.inf
        kept_ts = [ts for ts in every_ts if ts >= cutoff]
        if kept_ts:
            first, last = min(kept_ts), max(kept_ts)
        if since:
            ordered = [kept for kept in (e.since(cutoff) for e in ordered) if kept.count]
    return _Report(_printable(path), ordered, first, last, skipped, since, untimed)


def nearest_rank(sorted_values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile: the value of rank ``ceil(fraction * n)``."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def _format_number(value: float) -> str:
    if 1000 <= abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_span(seconds: float) -> str:
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts) or f"{seconds:.2g}s"


def _rate(report: _Report, count: int) -> str:
    if report.span <= 0:
        return "- (the events span no time)"
    return f"{_format_number(count / report.span)}/s"


def _headline(report: _Report) -> str:
    if report.first is None or report.last is None:
        if not report.total:
            since = f" since {report.since.text}" if report.since else ""
            return f"{report.path}: no events{since}"
        line = f"{report.path}: {_plural(report.total, 'event')}, none at a plausible time"
    else:
        line = (
            f"{report.path}: {_plural(report.total, 'event')}, {_format_time(report.first)} to "
            f"{_format_time(report.last)} ({_format_span(report.span)})"
        )
    if report.skipped:
        line += f"; skipped {report.skipped:,} without a numeric ts and a string event"
    return line


def _untimed_note(report: _Report) -> str | None:
    """Return the line counting the events whose ts is no plausible Unix time, if any."""
    if not report.untimed:
        return None
    earliest, latest = (_format_time(ts)[:4] for ts in PLAUSIBLE_TS)
    where = (
        "the report (--since needs their time)"
        if report.since
        else "the time span and the charts over time"
    )
    return (
        f"left {_plural(report.untimed, 'event')} out of {where}: their ts is no Unix time "
        f"in seconds from {earliest} to {latest} (milliseconds?)"
    )


def _event_line(report: _Report, event: _Event) -> str:
    errors = f", {_plural(event.errors, 'error')}" if event.errors else ""
    return f"{_plural(event.count, 'event')}, {_rate(report, event.count)}{errors}"


def _field_rows(event: _Event) -> list[list[str]]:
    rows = []
    for key, series in event.series.items():
        ordered = sorted(series.values)
        rows.append(
            [
                f"{key} ({series.unit})",
                f"{len(ordered):,}",
                *(_format_number(nearest_rank(ordered, q)) for _, q in PERCENTILES),
                _format_number(ordered[-1]),
            ]
        )
    return rows


_COLUMNS = ["field (unit)", "n", *(label for label, _ in PERCENTILES), "max"]


def render_text(report: _Report) -> str:
    """Return the report as plain text: a headline, then a table per event name."""
    lines = [_headline(report)]
    note = _untimed_note(report)
    if note:
        lines.append(note)
    for event in report.events:
        lines.extend(["", f"{event.name}: {_event_line(report, event)}"])
        rows = _field_rows(event)
        if not rows:
            lines.append("  (no timing fields: none ends in _ms or is named seconds or duration)")
            continue
        widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
        for row in [_COLUMNS, *rows]:
            cells = [row[0].ljust(widths[0])]
            cells.extend(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
            lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def run_report(args: argparse.Namespace) -> int:
    """Run ``botperf report``: print the tables, write the HTML page if asked.

    Raises:
        OSError: If the metrics file cannot be read or the HTML page cannot be written;
            ``filename`` names the file.
    """
    if args.html:
        _check_output(args.html)
    report = _load(args.path, args.since, args.event)
    print(render_text(report))
    if args.html:
        page = render_html(report)
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise _write_error(args.html, exc.errno, exc.strerror or str(exc)) from exc
        print(f"\nwrote {args.html}", file=sys.stderr)
    return 0


def _check_output(path: str) -> None:
    # Checked before the metrics file is read, which may take a while.
    if os.path.isdir(path):
        raise _write_error(path, errno.EISDIR, "it is a directory")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise _write_error(path, errno.ENOENT, f"there is no directory {folder}")


def _write_error(path: str, code: int | None, reason: str) -> OSError:
    return OSError(code, f"cannot write the HTML page: {reason}", path)


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
            f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{_format_number(tick)}</text>'
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
            legend.append((f"line-{label_text}", f"{label_text} per {_format_span(width)}"))
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
            f"{_format_number(tick)}</text>"
        )
    parts += _frame(label)
    bar_w = plot_w / _HISTOGRAM_BINS
    for index, count in enumerate(counts):
        if count:
            y = y_of(count)
            parts.append(
                f'<rect class="bar" x="{_LEFT + index * bar_w + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(bar_w - 1, 0.5):.1f}" height="{_HEIGHT - _BOTTOM - y:.1f}">'
                f"<title>{_format_number(bottom + index * width)} to "
                f"{_format_number(bottom + (index + 1) * width)} {unit}: "
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
            (f"marker marker-{label_text}", f"{label_text} {_format_number(value)} {unit}")
        )
    parts += _legend(legend)
    parts.append("</svg>")
    return "\n".join(parts)


def _charts(name: str, key: str, series: _Series) -> list[str]:
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
            f'<p class="empty">{_plural(left_out, "value")} of {caption} beyond '
            f"&plusmn;{CHART_LIMIT:.0e} left out of these charts.</p>"
        )
    return parts


def render_html(report: _Report) -> str:
    """Return the report as one self-contained HTML page with inline SVG charts."""
    title = f"botperf report: {report.path}"
    body = [
        "<header>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(_headline(report))}</p>",
    ]
    note = _untimed_note(report)
    if note:
        body.append(f"<p>{html.escape(note)}</p>")
    body.append("</header>")
    if not report.events:
        body.append('<p class="empty">No events to show.</p>')
    for event in report.events:
        body.append('<section class="event">')
        body.append(f"<h2>{html.escape(event.name)}</h2>")
        body.append(f'<p class="summary">{html.escape(_event_line(report, event))}</p>')
        rows = _field_rows(event)
        if not rows:
            body.append(
                '<p class="empty">No timing fields: none ends in _ms or is named seconds '
                "or duration.</p>"
            )
        else:
            body.append("<table><thead><tr>")
            body.extend(f"<th>{html.escape(column)}</th>" for column in _COLUMNS)
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
