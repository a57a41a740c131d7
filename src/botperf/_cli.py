"""The ``botperf`` command line (also ``python -m botperf``).

Each subcommand is registered in `SUBCOMMANDS` as a function that adds its
parser; the parser's ``handler`` default runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._exceptions import BotperfError
from ._report import add_report_parser

__all__ = ["build_parser", "main"]

#: Functions that each add one subcommand to the ``botperf`` sub-parsers.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_report_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``botperf`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="botperf",
        description=(
            "Performance primitives for chat bots: single-flight deduplication, "
            "LRU chat history, batched metrics and profiling."
        ),
    )
    parser.add_argument("--version", action="version", version=f"botperf {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        0 on success, 1 when a command failed with a `BotperfError` (its message
        is printed to stderr), 2 for a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(args)
    except BotperfError as exc:
        print(f"botperf: error: {exc}", file=sys.stderr)
        return 1
