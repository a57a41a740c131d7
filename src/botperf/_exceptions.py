"""The exceptions botperf raises.

Exported from `botperf` are the errors a caller catches and acts on; all derive from
`BotperfError`. Misuse (a value of the wrong type, a call in the wrong state, a missing
file) raises the builtin it stands for, as one of the private subclasses at the end of
this module: each is that builtin and a `BotperfError` too, so ``except TypeError``
and ``except BotperfError`` both catch it.
"""

from __future__ import annotations

import errno
import math
import reprlib

__all__ = [
    "BotperfError",
    "BotperfFileNotFoundError",
    "BotperfRuntimeError",
    "BotperfTypeError",
    "BotperfValueError",
    "DedupCancelledError",
    "FileFormatError",
    "InvalidOptionError",
    "MetricsNotWrittenError",
    "MetricsWriteError",
    "RateLimitedError",
    "StreamTooLongError",
    "safe_repr",
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


class FileFormatError(BotperfError, ValueError):
    """Raised when a file to read is not what botperf writes: a metrics file or a history dump.

    Attributes:
        path: The file.
        line: The 1-based number of the bad line, or ``None`` where the whole document is
            bad (a history dump).
    """

    def __init__(self, message: str, *, path: str, line: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class MetricsWriteError(BotperfError):
    """Raised when ``flush()`` could not write every waiting event.

    The batch that failed is kept and retried with backoff; nothing is lost yet.

    Attributes:
        waiting: How many events are still waiting to be written.
        sink: A description of where they were to be written.
    """

    def __init__(self, waiting: int, sink: str, cause: BaseException) -> None:
        super().__init__(
            f"could not write metric events to {sink}: {safe_repr(cause)}; {waiting} events wait "
            "and will be retried with backoff (closing the writer saves any still unwritten)"
        )
        self.waiting = waiting
        self.sink = sink


class MetricsNotWrittenError(BotperfError):
    """Raised when a metrics writer closes with events its sink would not take.

    They are saved to a JSON-lines file instead. If that save fails part way (a full
    disk), the file keeps the events saved whole, and the message says how many were
    saved and how many are lost.

    Attributes:
        count: How many events were not written to the sink.
        saved: How many of them were saved to ``saved_to``; the other
            ``count - saved`` are lost.
        saved_to: The JSON-lines file they were saved to instead, or ``None`` if none
            could be saved (they are then lost).
    """

    def __init__(
        self,
        count: int,
        sink: str,
        saved_to: str,
        save_error: BaseException | None,
        *,
        saved: int | None = None,
    ) -> None:
        if saved is None:
            saved = count if save_error is None else 0
        if save_error is None:
            where = f"they were saved to {saved_to} (read it with read_metrics())"
        elif saved == 0:
            where = (
                f"saving them to {saved_to} failed too ({safe_repr(save_error)}), so they are lost"
            )
        else:
            where = (
                f"{saved} of them were saved to {saved_to} (read it with read_metrics()), "
                f"and saving the other {count - saved} failed too ({safe_repr(save_error)}), "
                "so those are lost"
            )
        super().__init__(f"{count} metric events could not be written to {sink} at close; {where}")
        self.count = count
        self.saved = saved
        self.saved_to: str | None = saved_to if saved else None


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


def safe_repr(value: object) -> str:
    """Return ``repr(value)``, or ``<unrepresentable TypeName>`` if that raises.

    Values and exceptions are the user's objects: neither a written event nor an error
    message about them may fail because their ``repr()`` does.
    """
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


class _Misuse(BotperfError):
    """The base of the builtin stand-ins: a message, and the values it is about."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        for name, value in details.items():
            setattr(self, name, value)


class BotperfTypeError(_Misuse, TypeError):
    """A `TypeError` botperf raises: an argument of the wrong type (not exported)."""


class BotperfValueError(_Misuse, ValueError):
    """A `ValueError` botperf raises: an argument of the right type but unusable value."""


class BotperfRuntimeError(_Misuse, RuntimeError):
    """A `RuntimeError` botperf raises: an object used in a state that does not allow it."""


class BotperfFileNotFoundError(BotperfError, FileNotFoundError):
    """A `FileNotFoundError` botperf raises, with ``filename`` set to the missing file."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(errno.ENOENT, message, path)

    def __str__(self) -> str:
        return str(self.strerror)  # the message names the file already
