"""The words and tables of `botperf report`: its headline, notes and one table per event.

The HTML page (`botperf._report_html`) shows the same lines and rows.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ._report_data import PERCENTILES, PLAUSIBLE_TS, Event, Report, field_stats

__all__ = [
    "COLUMNS",
    "event_line",
    "field_rows",
    "format_number",
    "format_span",
    "headline",
    "plural",
    "render_text",
    "untimed_note",
]

#: The columns of a field table.
COLUMNS = ["field (unit)", "n", *(label for label, _ in PERCENTILES), "max"]


def format_number(value: float) -> str:
    """Return ``value`` with 4 significant digits, or as a whole number with commas."""
    if 1000 <= abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def plural(count: int, noun: str) -> str:
    """Return ``"1 event"`` or ``"2 events"``, with commas in large counts."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_span(seconds: float) -> str:
    """Return a duration as ``1h 2m 3s``, or with 2 significant digits below a second."""
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts) or f"{seconds:.2g}s"


def _rate(report: Report, count: int) -> str:
    if report.span <= 0:
        return "- (the events span no time)"
    return f"{format_number(count / report.span)}/s"


def headline(report: Report) -> str:
    """Return the first line: the file, its event count and time span, what was skipped."""
    if report.first is None or report.last is None:
        if not report.total:
            since = f" since {report.since.text}" if report.since else ""
            return f"{report.path}: no events{since}"
        line = f"{report.path}: {plural(report.total, 'event')}, none at a plausible time"
    else:
        line = (
            f"{report.path}: {plural(report.total, 'event')}, {_format_time(report.first)} to "
            f"{_format_time(report.last)} ({format_span(report.span)})"
        )
    if report.skipped:
        line += f"; skipped {report.skipped:,} without a numeric ts and a string event"
    return line


def untimed_note(report: Report) -> str | None:
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
        f"left {plural(report.untimed, 'event')} out of {where}: their ts is no Unix time "
        f"in seconds from {earliest} to {latest} (milliseconds?)"
    )


def event_line(report: Report, event: Event) -> str:
    """Return an event's summary: its count, its rate, and its errors if any."""
    errors = f", {plural(event.errors, 'error')}" if event.errors else ""
    return f"{plural(event.count, 'event')}, {_rate(report, event.count)}{errors}"


def field_rows(event: Event) -> list[list[str]]:
    """Return the cells of an event's field table, one row per timing field, as `COLUMNS`."""
    return [
        [
            f"{stats.key} ({stats.unit})",
            f"{stats.count:,}",
            *(format_number(value) for value in stats.percentiles),
            format_number(stats.maximum),
        ]
        for stats in field_stats(event)
    ]


def render_text(report: Report) -> str:
    """Return the report as plain text: a headline, then a table per event name."""
    lines = [headline(report)]
    note = untimed_note(report)
    if note:
        lines.append(note)
    for event in report.events:
        lines.extend(["", f"{event.name}: {event_line(report, event)}"])
        rows = field_rows(event)
        if not rows:
            lines.append("  (no timing fields: none ends in _ms or is named seconds or duration)")
            continue
        widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            cells = [row[0].ljust(widths[0])]
            cells.extend(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
            lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)
