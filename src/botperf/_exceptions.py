"""The exceptions botperf raises.

Every error botperf raises on purpose derives from :class:`BotperfError`, so one
``except BotperfError`` catches them all. Where an error is also a kind of builtin
error (a bad argument, a missing file), it subclasses that builtin too, so code that
already catches ``TypeError`` or ``ValueError`` keeps working.
"""

from __future__ import annotations

import reprlib

__all__ = [
    "BotperfError",
    "DedupCancelledError",
    "DedupKeyError",
    "MetricsFileError",
    "MetricsFileNotFoundError",
]


class BotperfError(Exception):
    """Raised for every error botperf reports on purpose; the base of all its exceptions."""


class DedupKeyError(BotperfError, TypeError):
    """Raised when a deduplication key is not hashable.

    Attributes:
        key: The key that could not be hashed.
    """

    def __init__(self, key: object, where: str, problem: str) -> None:
        super().__init__(
            f"{where}: the deduplication key {reprlib.repr(key)} is not hashable ({problem}); "
            "build the key from hashable values (str, int, tuple, frozenset), "
            "for example with @deduplicate(key=lambda prompt, model: (model, prompt))"
        )
        self.key = key


class DedupCancelledError(BotperfError, RuntimeError):
    """Raised in callers waiting on an execution that was cancelled from outside.

    A Deduplicator cancels an execution itself only once nobody waits for it. If
    something else cancels the task hosting it (for example code that cancels every
    task of an asyncio loop at shutdown), the callers still waiting get this error
    instead of waiting forever; the next call with the key starts afresh.

    Attributes:
        key: The key of the cancelled execution.
    """

    def __init__(self, key: object) -> None:
        super().__init__(
            f"the shared execution for key {reprlib.repr(key)} was cancelled from outside "
            "the Deduplicator (its task was cancelled directly, or the event loop is shutting "
            "down); call again to start a fresh execution"
        )
        self.key = key


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
