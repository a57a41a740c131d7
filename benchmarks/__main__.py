"""Run the benchmarks: ``python -m benchmarks [--quick] [NAME ...]``.

Each benchmark module measures botperf against its peers in this one process and
prints medians, min/max and ratios against the named baseline, then the targets from
the issues as measured / target. ``--json`` saves the run with its environment and
``--charts`` draws SVG charts (matplotlib, from the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from . import _harness
from ._harness import Report, print_report

#: The docs folder: charts drawn inside it are linked relative to it in the Markdown.
DOCS = Path(__file__).resolve().parent.parent / "docs"

#: Benchmark modules in ``benchmarks/``, each exposing ``run(quick: bool) -> Report``.
MODULES: list[str] = [
    "admission",
    "dedup",
    "exporters",
    "history",
    "history_cache",
    "metrics",
    "profiling",
    "redis_backends",
    "replies",
    "streams",
]


class Progress:
    """A one-line progress display on stderr: benchmark, repetitions done, time spent."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0
        self.name = ""
        self.repetitions = 0
        self.started = time.monotonic()
        self.interactive = sys.stderr.isatty()

    def start(self, name: str) -> None:
        self.index += 1
        self.name = name
        self.repetitions = 0
        self.started = time.monotonic()
        self.show(final=not self.interactive)

    def tick(self) -> None:
        self.repetitions += 1
        if self.interactive:
            self.show(final=False)

    def done(self) -> None:
        self.show(final=True)

    def show(self, *, final: bool) -> None:
        line = (
            f"[{self.index}/{self.total}] {self.name}: {self.repetitions} repetitions, "
            f"{time.monotonic() - self.started:.1f} s"
        )
        end = "\n" if final else ""
        print(f"\r{line:<72}", end=end, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="save the results as JSON")
    parser.add_argument("--charts", type=Path, metavar="DIR", help="draw SVG charts into DIR")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="write the tables as Markdown (for docs)"
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(MODULES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = args.names or MODULES
    progress = Progress(len(names))
    _harness.set_progress(progress.tick)
    reports: list[Report] = []
    for name in names:
        progress.start(name)
        module = importlib.import_module(f"benchmarks.{name}")
        report: Report = module.run(quick=args.quick)
        progress.done()
        print_report(report)
        reports.append(report)
    if args.json:
        from ._results import save

        save(args.json, reports, quick=args.quick)
        print(f"\nresults saved to {args.json}")
    chart_urls: dict[str, list[tuple[str, str]]] = {}
    if args.charts:
        from ._charts import draw

        for report_name, drawn in draw(reports, args.charts).items():
            for title, path in drawn:
                print(f"chart: {path}")
                # Links are relative to the docs folder that the Performance page sits in.
                url = (
                    path.resolve().relative_to(DOCS.resolve())
                    if DOCS in path.resolve().parents
                    else path
                )
                chart_urls.setdefault(report_name, []).append((title, str(url)))
    if args.markdown:
        from . import _markdown
        from ._results import environment

        _markdown.save(args.markdown, reports, environment(), quick=args.quick, charts=chart_urls)
        print(f"markdown tables written to {args.markdown}")
    targets = [target for report in reports for target in report.targets]
    missed = sum(not target.holds for target in targets)
    print(f"\n{len(targets) - missed} targets hold, {missed} missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
