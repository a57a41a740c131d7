"""Saving a benchmark run as JSON, with what it ran on."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ._harness import Report

PACKAGES = ("botperf", "anyio", "trio", "cachetools", "async-lru", "orjson", "redis")


def environment() -> dict[str, Any]:
    """The machine, interpreter and package versions a run measured."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "packages": {package: _version(package) for package in PACKAGES},
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def report_to_dict(report: Report) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    for measurement, raw in zip(report.measurements, data["measurements"], strict=True):
        raw.update(median=measurement.median, min=measurement.minimum, max=measurement.maximum)
    for target, raw in zip(report.targets, data["targets"], strict=True):
        raw["holds"] = target.holds
    return data


def save(path: Path, reports: list[Report], *, quick: bool) -> None:
    """Write the run to ``path`` as indented JSON (created with its parent folders)."""
    document = {
        "environment": environment(),
        "quick": quick,
        "reports": [report_to_dict(report) for report in reports],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
