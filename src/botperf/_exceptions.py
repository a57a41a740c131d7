"""The exceptions botperf raises.

Every error botperf raises on purpose derives from :class:`BotperfError`, so one
``except BotperfError`` catches them all. Where an error is also a kind of builtin
error (a bad argument, a missing file), it subclasses that builtin too, so code that
already catches ``TypeError`` or ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BotperfError",
    "HistoryFileError",
    "HistoryFileNotFoundError",
    "HistoryTypeError",
    "HistoryValueError",
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


class HistoryTypeError(BotperfError, TypeError):
    """Raised when a HistoryStore option or argument has the wrong type.

    Attributes:
        name: The option or argument, such as ``"role"`` or ``"max_channels"``.
        value: What was passed.
    """

    def __init__(self, name: str, value: object, expected: str) -> None:
        super().__init__(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
        self.name = name
        self.value = value


class HistoryValueError(BotperfError, ValueError):
    """Raised when a HistoryStore option or argument has the right type but an unusable value.

    Attributes:
        name: The option or argument, such as ``"role"`` or ``"max_channels"``.
        value: What was passed.
    """

    def __init__(self, name: str, value: object, expected: str) -> None:
        super().__init__(f"{name} must be {expected}, got {value!r}")
        self.name = name
        self.value = value


class HistoryFileError(BotperfError, ValueError):
    """Raised when a HistoryStore file to load is truncated, not JSON, or not a history dump.

    Attributes:
        path: The file.
        problem: What is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"cannot load history from {path!r}: {problem}; "
            "load() reads the JSON files HistoryStore.dump() writes"
        )
        self.path = path
        self.problem = problem


class HistoryFileNotFoundError(BotperfError, FileNotFoundError):
    """Raised when a HistoryStore file to load does not exist.

    Attributes:
        path: The file that was asked for.
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no history file at {path!r}: check the path, or start from an empty "
            "HistoryStore() when there is nothing saved yet"
        )
        self.path = path
