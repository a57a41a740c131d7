"""The exceptions botperf raises.

Every error botperf raises on purpose derives from `BotperfError`, so one
``except BotperfError`` catches them all. Where an error is also a kind of builtin
error (a bad argument, a missing file), it subclasses that builtin too, so code that
already catches ``TypeError`` or ``ValueError`` keeps working.
"""

from __future__ import annotations

import math
import reprlib

__all__ = [
    "BotperfError",
    "DedupCancelledError",
    "DedupKeyError",
    "HistoryFileError",
    "HistoryFileNotFoundError",
    "HistoryTypeError",
    "HistoryValueError",
    "IncompatibleRecordersError",
    "InvalidDurationError",
    "InvalidOptionError",
    "MetricsBufferFullError",
    "MetricsFieldError",
    "MetricsFileError",
    "MetricsFileNotFoundError",
    "MetricsNotWrittenError",
    "MetricsWriteError",
    "MetricsWriterStateError",
    "RateLimitedError",
    "RedisAsyncioRequiredError",
    "RedisCommandError",
    "RedisKeyError",
    "RedisRemoteError",
    "RedisUnavailableError",
    "StreamTooLongError",
    "TimerInUseError",
]


class BotperfError(Exception):
    """Raised for every error botperf reports on purpose; the base of all its exceptions."""


class InvalidOptionError(BotperfError, ValueError, TypeError):
    """Raised when a constructor option is of the wrong type or outside its allowed range.

    Every botperf class validates its keyword options when it is built, so a bad option
    fails at once rather than later in a background task. The error is both a
    ``ValueError`` and a ``TypeError``, so either ``except`` clause catches it.

    Attributes:
        owner: The class or function the option was given to, e.g. ``"Deduplicator"``.
        option: The option's name.
        value: The rejected value.
    """

    def __init__(self, owner: str, option: str, value: object, allowed: str) -> None:
        super().__init__(f"{owner}({option}={value!r}): {option} must be {allowed}")
        self.owner = owner
        self.option = option
        self.value = value


def check_int_option(owner: str, option: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``.

    Raises:
        InvalidOptionError: Otherwise, naming the owner, the option and the allowed range.
    """
    if type(value) is not int or value < minimum:
        raise InvalidOptionError(owner, option, value, f"an int of at least {minimum}")
    return value


def check_seconds_option(
    owner: str, option: str, value: object, *, allow_zero: bool = False
) -> float:
    """Return ``value`` as a float if it is a finite, positive number of seconds.

    ``allow_zero`` also accepts 0. Booleans are refused.

    Raises:
        InvalidOptionError: Otherwise, naming the owner, the option and the allowed range.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        allowed = "a finite number of seconds, " + ("0 or more" if allow_zero else "above 0")
        raise InvalidOptionError(owner, option, value, allowed)
    return float(value)


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


class StreamTooLongError(BotperfError, RuntimeError):
    """Raised in every consumer of a shared stream whose upstream went past `max_chunks`.

    The consumers first get the `max_chunks` chunks buffered before the limit; then
    the upstream is closed and each of them gets this error. It is not cached: the
    next call with the key starts afresh.

    Attributes:
        key: The key of the stream.
        max_chunks: The limit it went past.
    """

    def __init__(self, key: object, max_chunks: int) -> None:
        super().__init__(
            f"the shared stream for key {reprlib.repr(key)} produced more than "
            f"max_chunks={max_chunks:,} chunks, so its upstream was closed and every consumer "
            "got this error after the first chunks; if such long replies are expected, "
            "raise Deduplicator(max_chunks=...), else look for an upstream that never ends"
        )
        self.key = key
        self.max_chunks = max_chunks


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
    """Raised when a HistoryStore method's argument has the wrong type.

    A non-str role, content or author, an unhashable channel, or a channel key ``dump()``
    cannot write. Bad constructor options raise `InvalidOptionError` instead.

    Attributes:
        name: The argument, such as ``"role"`` or ``"channel"``.
        value: What was passed.
    """

    def __init__(self, name: str, value: object, expected: str) -> None:
        super().__init__(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
        self.name = name
        self.value = value


class HistoryValueError(BotperfError, ValueError):
    """Raised when a HistoryStore method's argument has the right type but an unusable value.

    An empty role, or a ``count_tokens`` result that is not a non-negative int. Bad
    constructor options raise `InvalidOptionError` instead.

    Attributes:
        name: The argument, such as ``"role"`` or ``"count_tokens(content)"``.
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


class MetricsFieldError(BotperfError, ValueError):
    """Raised when ``record()`` is given a field named ``ts`` or ``event``, which the writer sets.

    Attributes:
        event: The event being recorded.
        field: The reserved field name.
    """

    def __init__(self, event: object, field: str) -> None:
        super().__init__(
            f"record({event!r}, {field}=...): the field name {field!r} is reserved, the writer "
            "sets it (ts: the time of the call, event: the name); rename the field"
        )
        self.event = event
        self.field = field


class MetricsBufferFullError(BotperfError, RuntimeError):
    """Raised when ``record()`` with ``on_full="block"`` would wait where nothing could free room.

    On the event loop thread of an ``async with`` writer, waiting would stop the very loop
    that writes the batches; before the writer is entered, nothing writes at all.
    """

    def __init__(self, max_buffer: int, where: str) -> None:
        super().__init__(
            f"the metrics buffer is full ({max_buffer} events) and on_full='block' cannot "
            f"wait {where}; record from another thread, raise max_buffer, "
            "or use on_full='drop_oldest' or 'drop_new'"
        )
        self.max_buffer = max_buffer


class MetricsWriterStateError(BotperfError, RuntimeError):
    """Raised when a metrics writer is used in a state that does not allow it.

    For example recording after it was closed, entering it twice, or calling
    ``flush_sync()`` on the event loop thread of an ``async with`` writer.
    """


class MetricsWriteError(BotperfError):
    """Raised when ``flush()`` could not write every waiting event.

    The batch that failed is kept and retried with backoff; nothing is lost yet.

    Attributes:
        waiting: How many events are still waiting to be written.
        sink: A description of where they were to be written.
    """

    def __init__(self, waiting: int, sink: str, cause: BaseException) -> None:
        super().__init__(
            f"could not write metric events to {sink}: {cause!r}; {waiting} events wait "
            "and will be retried with backoff (closing the writer saves any still unwritten)"
        )
        self.waiting = waiting
        self.sink = sink


class MetricsNotWrittenError(BotperfError):
    """Raised when a metrics writer closes with events its sink would not take.

    Attributes:
        count: How many events were not written to the sink.
        saved_to: The JSON-lines file they were saved to instead, or ``None`` if saving
            them failed too (they are then lost).
    """

    def __init__(
        self, count: int, sink: str, saved_to: str, save_error: BaseException | None
    ) -> None:
        if save_error is None:
            where = f"they were saved to {saved_to} (read it with read_metrics())"
        else:
            where = f"saving them to {saved_to} failed too ({save_error!r}), so they are lost"
        super().__init__(f"{count} metric events could not be written to {sink} at close; {where}")
        self.count = count
        self.saved_to: str | None = saved_to if save_error is None else None


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


class RedisKeyError(BotperfError, TypeError):
    """Raised when a ``RedisDeduplicator`` key cannot be written as JSON.

    Processes agree on a key through its JSON text, so a key must be built from str,
    int, float, bool, None, lists and tuples, and dicts with str keys.

    Attributes:
        key: The key that was given.
    """

    def __init__(self, key: object, problem: str, where: str = "RedisDeduplicator.run()") -> None:
        super().__init__(
            f"{where}: the key {reprlib.repr(key)} cannot be written as JSON "
            f"({problem}); build it from str, int, float, bool, None, tuples and lists, "
            "for example (model, prompt.strip().casefold())"
        )
        self.key = key


class RedisRemoteError(BotperfError, RuntimeError):
    """Raised in callers whose shared execution raised in another process.

    The exception itself stays in the process that ran the call; this error carries
    its type's name and message.

    Attributes:
        key: The deduplication key.
        error_type: The qualified name of the exception's type, such as ``"ValueError"``.
        error_message: ``str()`` of the exception.
    """

    def __init__(self, key: object, error_type: str, error_message: str) -> None:
        super().__init__(
            f"the execution for key {reprlib.repr(key)} raised in another process: "
            f"{error_type}: {error_message}"
        )
        self.key = key
        self.error_type = error_type
        self.error_message = error_message


class RateLimitedError(BotperfError):
    """Raised when a `RateLimiter` or `FairLimiter` refuses a request for a key.

    Attributes:
        key: The key that was refused (a user, a channel, a guild).
        retry_after: Seconds until the same request would be admitted, or ``None`` when
            no time can be known (a `FairLimiter` whose wait queue was full).
    """

    def __init__(self, key: object, retry_after: float | None) -> None:
        if retry_after is None:
            advice = (
                "every slot is busy and the wait queue is full (max_waiting); "
                "retry once fewer requests wait"
            )
        else:
            # Rounded up, so that retrying after the time shown always succeeds.
            shown = math.ceil(retry_after * 1000) / 1000
            advice = f"retry in {shown:g} s"
        super().__init__(f"{reprlib.repr(key)} is rate limited: {advice}")
        self.key = key
        self.retry_after = retry_after
