"""The exceptions botperf raises.

Every error botperf raises on purpose derives from :class:`BotperfError`, so one
``except BotperfError`` catches them all. Where an error is also a kind of builtin
error (a bad argument, a missing file), it subclasses that builtin too, so code that
already catches ``TypeError`` or ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BotperfError",
    "MetricsFileError",
    "MetricsFileNotFoundError",
]


class BotperfError(Exception):
    """Raised for every error botperf reports on purpose; the base of all its exceptions."""


class MetricsFileError(BotperfError, ValueError):
    """Raised when a metrics file holds a line that is not a JSON object.

    Attributes:
        path: The file.
        line_number: The 1-based number of the bad line.
    """

    def __init__(self, path: str, line_number: int, problem: str) -> None:
        super().__init__(
            f"{path}, line {line_number}: {problem}; "
            "a metrics file holds one JSON object per line, as BatchMetricsWriter writes them"
        )
        self.path = path
        self.line_number = line_number


class MetricsFileNotFoundError(BotperfError, FileNotFoundError):
    """Raised when a metrics file to read does not exist.

    Attributes:
        path: The file that was asked for.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"no metrics file at {path!r}: check the path, or write one first")
        self.path = path
