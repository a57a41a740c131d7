"""The exceptions botperf raises.

Every error botperf raises on purpose derives from `BotperfError`, so one
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
    "IncompatibleRecordersError",
    "InvalidDurationError",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "TimerInUseError",
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


class InvalidDurationError(BotperfError, ValueError):
    """Raised when a duration to record is negative, NaN or infinite.

    Attributes:
        name: The name the duration was recorded under.
        seconds: The rejected value.
    """

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(
            f"cannot record {seconds!r} seconds for {name!r}: a duration must be a finite "
            "number >= 0; measure with time.perf_counter() differences"
        )
        self.name = name
        self.seconds = seconds


class IncompatibleRecordersError(BotperfError, ValueError):
    """Raised when merging latency recorders built with different relative accuracies.

    Attributes:
        accuracy: The relative accuracy of the recorder merged into.
        other_accuracy: The relative accuracy of the recorder merged from.
    """

    def __init__(self, accuracy: float, other_accuracy: float) -> None:
        super().__init__(
            f"cannot merge a LatencyRecorder with relative_accuracy={other_accuracy!r} into one "
            f"with relative_accuracy={accuracy!r}: their buckets differ; build both recorders "
            "with the same relative_accuracy"
        )
        self.accuracy = accuracy
        self.other_accuracy = other_accuracy


class TimerInUseError(BotperfError, RuntimeError):
    """Raised when one ``timed`` or ``profile`` object is entered again before it exited.

    Attributes:
        name: What the object times: the timing name, or the profile's file.
    """

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"{kind}({name!r}) is already timing a block: one object times one block at a "
            f"time; call {kind}(...) afresh for each block (as in `with {kind}(...):`), "
            "or use it as a decorator, which is safe for concurrent calls"
        )
        self.name = name


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
