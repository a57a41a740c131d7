"""The ``botperf`` command line (also ``python -m botperf``).

Each subcommand is registered in `SUBCOMMANDS` as a function that adds its
parser; the parser's ``handler`` default runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._exceptions import BotperfError
from ._report import add_report_parser

__all__ = ["EXIT_BROKEN_PIPE", "build_parser", "main"]

#: The exit status when the reader of stdout went away (``botperf report FILE | head``):
#: 128 + SIGPIPE, what a shell reports for a tool that SIGPIPE ended, so ``set -o pipefail``
#: treats botperf like any other Unix tool.
EXIT_BROKEN_PIPE = 128 + 13

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
        0 on success, 1 when a command failed with a `BotperfError` or an `OSError`
        (one line on stderr says why), 2 for a usage error, `EXIT_BROKEN_PIPE` (141)
        when stdout's reader closed early, as ``head`` does: the command stops quietly.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        status = handler(args)
        # Flushed here, so that a reader gone early is noticed where it can be handled
        # rather than in the interpreter's final flush.
        sys.stdout.flush()
    except BotperfError as exc:
        print(f"botperf: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        # A file the command may not read or write: the file and the reason, not a traceback.
        print(f"botperf: error: {_describe_os_error(exc)}", file=sys.stderr)
        return 1
    return status


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _discard_stdout() -> None:
    # As the Python docs advise for SIGPIPE: point stdout at devnull, so that the
    # interpreter's final flush of what is still buffered does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
