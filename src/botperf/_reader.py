"""Reading metrics files: JSON lines written by `BatchMetricsWriter`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from ._exceptions import MetricsFileError, MetricsFileNotFoundError

__all__ = ["read_metrics"]

logger = logging.getLogger(__name__)


def read_metrics(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Iterate over the events of a JSON-lines metrics file, in the order written.

    Each line holds one JSON object (at least ``ts`` and ``event``, then the event's
    fields). Blank lines are skipped. A torn last line, which a writer killed in the
    middle of a write may leave, is skipped with a warning through `logging`;
    every complete line before it is returned. The file is read lazily, one line at a
    time, so memory stays flat however large it is.

    Args:
        path: The metrics file.

    Returns:
        An iterator of the events as dicts.

    Raises:
        MetricsFileNotFoundError: At once, if ``path`` does not exist or is a directory.
        MetricsFileError: While iterating, if a line other than a torn last one is not a
            JSON object; the message names the file and the line number.
    """
    file_path = os.fspath(path)
    if not os.path.isfile(file_path):
        raise MetricsFileNotFoundError(file_path)
    return _iter_events(file_path)


def _iter_events(path: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as file:
        line_number = 0
        for raw_line in file:
            line_number += 1
            complete = raw_line.endswith(b"\n")
            if not raw_line.strip():
                continue
            try:
                event = json.loads(raw_line)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                if not complete:
                    logger.warning(
                        "skipped the torn last line %d of metrics file %s "
                        "(a writer was probably killed while writing it)",
                        line_number,
                        path,
                    )
                    return
                raise MetricsFileError(path, line_number, f"not valid JSON ({exc})") from exc
            if not isinstance(event, dict):
                raise MetricsFileError(
                    path, line_number, f"expected a JSON object, found {type(event).__name__}"
                )
            yield event
