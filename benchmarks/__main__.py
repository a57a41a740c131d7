"""Run the benchmarks: ``python -m benchmarks [--quick] [NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ._harness import print_report

#: Benchmark modules in ``benchmarks/``, each exposing ``run(quick: bool) -> Report``.
MODULES: list[str] = ["dedup"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test)")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(MODULES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    for name in args.names or MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        print_report(module.run(quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
