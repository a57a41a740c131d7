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
    "IncompatibleRecordersError",
    "InvalidDurationError",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "RedisAsyncioRequiredError",
    "RedisCommandError",
    "RedisUnavailableError",
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


class RedisUnavailableError(BotperfError, ConnectionError):
    """Raised when Redis cannot be reached, or does not answer within the timeout.

    The operation may or may not have taken effect on the server: like any call over
    a network, a lost reply cannot tell.

    Attributes:
        address: The Redis server, as ``host:port/db`` or a Unix socket path.
        operation: What botperf was doing, such as ``"RedisHistoryStore.append"``.
    """

    def __init__(self, address: str, operation: str, problem: str) -> None:
        super().__init__(
            f"{operation} could not use Redis at {address}: {problem}; check that "
            "redis-server runs and is reachable from here, or raise the timeout option"
        )
        self.address = address
        self.operation = operation


class RedisCommandError(BotperfError, RuntimeError):
    """Raised when Redis refuses a command, or a key holds data botperf did not write.

    Typical causes: another program uses keys under the same prefix (Redis answers
    ``WRONGTYPE``), the server is out of memory, or a read-only replica or an ACL
    refuses writes.

    Attributes:
        operation: What botperf was doing, such as ``"RedisHistoryStore.append"``.
        problem: Redis's answer, or what is wrong with the data.
    """

    def __init__(self, operation: str, problem: str) -> None:
        super().__init__(
            f"{operation} failed: {problem}; give botperf a key prefix no other program "
            "uses, and check the server's memory limit and the user's permissions"
        )
        self.operation = operation
        self.problem = problem


class RedisAsyncioRequiredError(BotperfError, RuntimeError):
    """Raised when a ``botperf.redis`` class is awaited outside an asyncio event loop.

    redis-py's asyncio client runs only on asyncio, not on trio.

    Attributes:
        operation: The call that was made, such as ``"RedisHistoryStore.append"``.
    """

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"{operation} needs a running asyncio event loop (redis-py's asyncio client "
            "does not run on trio); call it from asyncio code, or from trio through "
            "anyio.from_thread.start_blocking_portal('asyncio') in a worker thread"
        )
        self.operation = operation
