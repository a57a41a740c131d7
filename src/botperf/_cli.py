"""The ``botperf`` command line (also ``python -m botperf``).

Each subcommand is registered in `SUBCOMMANDS` as a function that adds its
parser; the parser's ``handler`` default runs it and returns the exit status.
``botperf report`` is wired here; what it computes and draws lives in
`botperf._report_data`, `botperf._report_text` and `botperf._report_html`.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from ._exceptions import BotperfError
from ._report_data import Since, load_report
from ._report_html import render_html
from ._report_text import render_text

__all__ = ["EXIT_BROKEN_PIPE", "add_report_parser", "build_parser", "main", "parse_since"]

#: The exit status when the reader of stdout went away (``botperf report FILE | head``):
#: 128 + SIGPIPE, what a shell reports for a tool that SIGPIPE ended, so ``set -o pipefail``
#: treats botperf like any other Unix tool.
EXIT_BROKEN_PIPE = 128 + 13


def parse_since(text: str) -> Since:
    """Parse ``--since``: ISO-8601 (UTC when no offset is given) or ``30s``/``10m``/``2h``/``1d``.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is neither (a usage error).
    """
    try:
        return Since.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# What a subcommand is given to add its parser: the sub-parsers' `add_parser` method.
AddParser = Callable[..., argparse.ArgumentParser]


def add_report_parser(add_parser: AddParser) -> None:
    """Add the ``report`` subcommand to the ``botperf`` command line."""
    parser = add_parser(
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


def run_report(args: argparse.Namespace) -> int:
    """Run ``botperf report``: print the tables, write the HTML page if asked.

    Raises:
        OSError: If the metrics file cannot be read or the HTML page cannot be written;
            ``filename`` names the file.
    """
    if args.html:
        _check_output(args.html)
    report = load_report(args.path, args.since, args.event)
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


#: Functions that each add one subcommand to the ``botperf`` sub-parsers.
SUBCOMMANDS: list[Callable[[AddParser], None]] = [
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
        add_subcommand(subparsers.add_parser)
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
