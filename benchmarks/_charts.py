"""Charts of a benchmark run, as SVG files for the docs' Performance page.

matplotlib comes with the ``bench`` extra; it is imported only when charts are asked for.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._harness import Measurement, Report, ScalingChart

BOTPERF_COLOR = "#e8710a"
# Peers never use botperf's orange, so its line stands out in every chart.
PEER_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f", "#17becf", "#8c564b"]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def draw(reports: list[Report], folder: Path) -> dict[str, list[tuple[str, Path]]]:
    """Draw each report's scaling charts and a bar chart per other group into ``folder``.

    Returns:
        Per report name, the (title, file) of each chart drawn, in order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "botperf", "font.size": 9})
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[tuple[str, Path]]] = {}
    for report in reports:
        charts = written.setdefault(report.name, [])
        for chart in report.charts:
            path = folder / f"{slug(report.name)}-{slug(chart.title)}.svg"
            _scaling(plt, report, chart, path)
            charts.append((chart.title, path))
        groups: dict[str, list[Measurement]] = {}
        for measurement in report.measurements:
            if not any(measurement.group.startswith(c.group_prefix) for c in report.charts):
                groups.setdefault(measurement.group, []).append(measurement)
        for group, measurements in groups.items():
            path = folder / f"{slug(report.name)}-{slug(group)}.svg"
            _bars(plt, group, measurements, path)
            charts.append((group, path))
    return written


def _bars(plt: object, title: str, measurements: list[Measurement], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(measurements) + 1.2))  # type: ignore[attr-defined]
    names = [m.implementation for m in measurements]
    medians = [m.median for m in measurements]
    errors = [
        [m.median - m.minimum for m in measurements],
        [m.maximum - m.median for m in measurements],
    ]
    colors = [BOTPERF_COLOR if "botperf" in name else "#7f8c9b" for name in names]
    axes.barh(names, medians, xerr=errors, color=colors, capsize=3)
    axes.invert_yaxis()
    axes.set_xlabel(f"median ({measurements[0].unit}); whiskers: min-max")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, format="svg")
    plt.close(figure)  # type: ignore[attr-defined]


def _scaling(plt: object, report: Report, chart: ScalingChart, path: Path) -> None:
    lines: dict[str, list[tuple[float, float]]] = {}
    unit = ""
    for m in report.measurements:
        if m.group.startswith(chart.group_prefix) and chart.x_param in m.params:
            point = (float(m.params[chart.x_param]), m.median)
            lines.setdefault(m.implementation, []).append(point)
            unit = m.unit
    figure, axes = plt.subplots(figsize=(7, 4))  # type: ignore[attr-defined]
    peer_colors = iter(PEER_COLORS * 2)
    for name, points in lines.items():
        points.sort()
        if "botperf" in name:
            style: dict[str, object] = {"linewidth": 2.5, "color": BOTPERF_COLOR}
        else:
            style = {"linewidth": 1.5, "color": next(peer_colors)}
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name, **style)
    axes.set_xscale("log")
    if chart.log_y:
        axes.set_yscale("log")
    axes.set_xlabel(chart.x_label)
    axes.set_ylabel(f"median ({unit})")
    axes.set_title(chart.title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="svg")
    plt.close(figure)  # type: ignore[attr-defined]
