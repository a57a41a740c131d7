"""Reading metrics files: JSON lines written by `BatchMetricsWriter`."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from typing import IO, Any

from ._exceptions import BotperfFileNotFoundError, FileFormatError
from ._options import check_int_option

__all__ = ["DEFAULT_MAX_LINE_BYTES", "read_metrics"]

logger = logging.getLogger(__name__)

#: The longest line `read_metrics` reads by default, in bytes: far above any real event.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

# How much of an over-long last line is read at a time while looking for its end.
_SKIP_CHUNK_BYTES = 1024 * 1024


def read_metrics(
    path: str | os.PathLike[str], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[dict[str, Any]]:
    """Iterate over the events of a JSON-lines metrics file, in the order written.

    Each line holds one JSON object; blank lines are skipped. A torn last line (no
    newline, and not readable as a JSON object), which a writer killed mid-write or a
    power loss may leave, is skipped with a warning through `logging`. The file is read
    lazily, one line of at most ``max_line_bytes`` at a time, so memory stays bounded
    however large the file or its lines are.

    Args:
        path: The metrics file.
        max_line_bytes: The longest line read, in bytes, not counting its newline.

    Returns:
        An iterator of the events as dicts.

    Raises:
        InvalidOptionError: At once, if ``max_line_bytes`` is not an int of at least 1.
        FileNotFoundError: At once, if ``path`` does not exist or is not a
            regular file (a directory); a ``FileNotFoundError`` too.
        OSError: At once, or while iterating, if the file cannot be opened or read
            (``PermissionError`` for one it may not read); ``filename`` is ``path``.
        FileFormatError: While iterating, if a line other than a torn last one is not
            a JSON object, is nested too deeply to parse, or is longer than
            ``max_line_bytes``; the message names the file and the line number.
    """
    check_int_option("read_metrics", "max_line_bytes", max_line_bytes, minimum=1)
    file_path = os.fspath(path)
    try:
        mode = os.stat(file_path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_found(file_path)
        # Opened now, and closed, so that a file it may not read fails at the call, like a
        # missing one; the iterator opens it again when it starts.
        with open(file_path, "rb"):
            pass
    except (FileNotFoundError, NotADirectoryError):  # a/b/c where a/b is a file
        raise _not_found(file_path) from None
    except OSError as exc:
        raise _os_error(file_path, exc) from exc
    return _iter_events(file_path, max_line_bytes)


def _format_error(path: str, line_number: int, problem: str) -> FileFormatError:
    # The one place the reader builds its file-format error.
    return FileFormatError(
        f"{path}, line {line_number}: {problem}; "
        "a metrics file holds one JSON object per line, as BatchMetricsWriter writes them",
        path=path,
        line=line_number,
    )


def _not_found(path: str) -> FileNotFoundError:
    return BotperfFileNotFoundError(
        f"no metrics file at {path!r}: check the path, or write one first", path
    )


def _os_error(path: str, exc: OSError) -> OSError:
    """Return ``exc`` again as an error of the same kind that names ``path``."""
    # OSError(errno, ...) picks the subclass that errno stands for (PermissionError...).
    return OSError(exc.errno, f"cannot read the metrics file: {exc.strerror or exc}", path)


def _iter_events(path: str, max_line_bytes: int) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as file:
            yield from _parse_lines(path, file, max_line_bytes)
    except FileNotFoundError:
        raise _not_found(path) from None
    except OSError as exc:
        raise _os_error(path, exc) from exc


def _parse_lines(path: str, file: IO[bytes], max_line_bytes: int) -> Iterator[dict[str, Any]]:
    readline = file.readline
    line_number = 0
    while True:
        # One byte more than allowed, so an over-long line is seen without reading it all.
        raw_line = readline(max_line_bytes + 1)
        if not raw_line:
            return
        line_number += 1
        complete = raw_line.endswith(b"\n")
        if len(raw_line) > max_line_bytes and not complete:
            if _skip_to_line_end(file):
                raise _format_error(
                    path,
                    line_number,
                    f"longer than max_line_bytes={max_line_bytes:,} bytes; "
                    "read it with a larger max_line_bytes if it is a real event",
                )
            _warn_torn(path, line_number)
            return
        if not raw_line.strip():
            continue
        try:
            event = json.loads(raw_line)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            if not complete:
                _warn_torn(path, line_number)
                return
            raise _format_error(path, line_number, f"not valid JSON ({exc})") from exc
        except RecursionError:
            # What the parser raises for arrays or objects nested deeper than it can go.
            if not complete:
                _warn_torn(path, line_number)
                return
            raise _format_error(
                path, line_number, "its arrays or objects are nested too deeply to parse"
            ) from None
        if not isinstance(event, dict):
            raise _format_error(
                path, line_number, f"expected a JSON object, found {type(event).__name__}"
            )
        yield event


def _skip_to_line_end(file: IO[bytes]) -> bool:
    """Read on to the end of the current line in bounded chunks; whether a newline ends it."""
    while True:
        chunk = file.readline(_SKIP_CHUNK_BYTES)
        if not chunk:
            return False
        if chunk.endswith(b"\n"):
            return True


def _warn_torn(path: str, line_number: int) -> None:
    logger.warning(
        "skipped the torn last line %d of metrics file %s "
        "(a writer was probably killed, or the machine lost power, while writing it)",
        line_number,
        path,
    )
