"""A benchmark run as Markdown tables, for the docs' Performance page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._harness import Measurement, Report, format_value


def render(
    reports: list[Report],
    environment: dict[str, Any],
    *,
    quick: bool,
    charts: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    """Return Markdown: the environment, then per report its charts, groups and targets.

    ``charts`` maps a report's name to the (title, URL) of its charts, as the page that
    includes this Markdown links them.
    """
    packages = ", ".join(
        f"{name} {version}" for name, version in environment["packages"].items() if version
    )
    lines = [
        f"Measured on {environment['date']}: Python {environment['python']} "
        f"({environment['implementation']}), {environment['cpu_count']} cores, "
        f"{environment['platform']}; {packages}."
        + (" A `--quick` run: fewer repetitions, noisier numbers." if quick else ""),
        "",
    ]
    for report in reports:
        lines += [f"### {report.name}", ""]
        for title, url in (charts or {}).get(report.name, []):
            lines += [f"![{title}]({url})", ""]
        groups: dict[str, list[Measurement]] = {}
        for measurement in report.measurements:
            groups.setdefault(measurement.group, []).append(measurement)
        for group, measurements in groups.items():
            baseline = next((m for m in measurements if m.baseline), None)
            ratio_header = f" vs {baseline.implementation}" if baseline else ""
            lines += [
                f"**{group}**",
                "",
                f"| implementation | median | min | max | ratio{ratio_header} |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for m in measurements:
                ratio = (
                    f"{m.median / baseline.median:.2f}x"
                    if baseline is not None and baseline.median > 0
                    else ""
                )
                name = (
                    f"**{m.implementation}**"
                    if "botperf" in m.implementation
                    else (m.implementation)
                )
                lines.append(
                    f"| {name} | {format_value(m.median, m.unit)} | "
                    f"{format_value(m.minimum, m.unit)} | {format_value(m.maximum, m.unit)} | "
                    f"{ratio} |"
                )
            lines.append("")
        if report.targets:
            lines += ["| target | measured | target | verdict |", "| --- | ---: | ---: | --- |"]
            for target in report.targets:
                sign = ">=" if target.higher_is_better else "<="
                verdict = "holds" if target.holds else "**missed**"
                lines.append(
                    f"| {target.description} | {format_value(target.measured, target.unit)} | "
                    f"{sign} {format_value(target.target, target.unit)} | {verdict} |"
                )
            lines.append("")
        lines += [f"- {note}" for note in report.notes]
        if report.notes:
            lines.append("")
    return "\n".join(lines)


def save(
    path: Path,
    reports: list[Report],
    environment: dict[str, Any],
    *,
    quick: bool,
    charts: dict[str, list[tuple[str, str]]] | None = None,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(reports, environment, quick=quick, charts=charts), encoding="utf-8")
