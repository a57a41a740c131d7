"""Where `botperf.BatchMetricsWriter` sends its batches: the sink protocol and sinks."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any, Literal, Protocol, final, runtime_checkable

from ._encoding import EncoderName, encode_batch, resolve_encoder
from ._exceptions import InvalidOptionError
from ._options import check_int_option

__all__ = ["JsonLinesFileSink", "MetricsSink", "as_sink", "save_lines"]

logger = logging.getLogger(__name__)

_TAIL_BLOCK = 64 * 1024  # bytes read at a time, backwards, to find a file's last line
_MAX_LINE_CHECKED = 16 * 1024 * 1024  # a longer unterminated last line is cut off unparsed


@runtime_checkable
class MetricsSink(Protocol):
    """What a batch of events is written to: implement it to ship metrics anywhere.

    `botperf.BatchMetricsWriter` calls the methods from one worker thread at a
    time, never on the event loop, so they may block.
    """

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        """Write one batch: every event or, by raising, none of them.

        Args:
            events: The events in the order recorded, each a dict with ``ts``, ``event``
                and the event's fields. The list and its dicts are the sink's to keep or
                change: a retry of the batch gets a new list of new dicts. The field
                values in them are the objects given to ``record()``, not copies.

        Raises:
            Exception: Any exception means the batch was not written; the writer keeps
                it and retries it later with backoff.
        """

    def close(self) -> None:
        """Release what the sink holds; called once, after its last batch."""


@final
class JsonLinesFileSink:
    """A JSON-lines file: each batch appended with one ``write`` system call.

    Each event is one compact JSON object on its own line (see
    `botperf.read_metrics`). The file opens lazily, on the first batch, in append
    mode, so a failure to open (a missing directory, no permission) is a failed write that
    is retried. A batch is encoded to one bytes object and written whole; if the system
    writes only part of it (a full disk), the file is cut back to where the batch began,
    so a retry never leaves a broken line in the middle of the file (should even that
    fail, the fragment is logged and the next batch starts on a new line). The sink
    tracks the file's size itself: one writer per file.

    A file left by a writer that was killed mid-write may end in a torn line. When the
    sink opens a file that does not end in a newline, it cuts that fragment off and
    logs a warning with its size, so the next event does not glue onto it; a last line
    that is a whole JSON object, which `botperf.read_metrics` would return, is
    kept and ended with a newline instead. The sink opens the file for reading and
    writing to look at its end.

    Rotation works like `logging.handlers.RotatingFileHandler`: before a batch
    that would take the file past ``rotate_bytes``, ``path`` becomes ``path.1``,
    ``path.1`` becomes ``path.2`` and so on up to ``path.<backups>``, and the oldest is
    deleted. Rotation happens only between batches, so a line never spans two files
    (one batch larger than ``rotate_bytes`` makes a file larger than ``rotate_bytes``).

    Args:
        path: The file to append to.
        rotate_bytes: Rotate before the file would grow past this many bytes; ``None``
            (the default) never rotates.
        backups: How many rotated files to keep, at least 1.
        fsync: Call ``os.fsync`` after every batch, so a batch survives a power loss
            once written. It costs a disk flush per batch, which is slow on a spinning
            disk or a network filesystem.
        encoder: ``"auto"`` (orjson when importable, else the stdlib ``json``),
            ``"json"`` or ``"orjson"``; both write the same events.

    Raises:
        InvalidOptionError: If ``rotate_bytes`` is not a positive int or ``None``,
            ``backups`` is not an int of at least 1, or ``encoder`` is not one of the
            names above.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rotate_bytes: int | None = None,
        backups: int = 5,
        fsync: bool = False,
        encoder: EncoderName = "auto",
    ) -> None:
        check_file_options(
            "JsonLinesFileSink", rotate_bytes=rotate_bytes, backups=backups, encoder=encoder
        )
        self._path = os.fspath(path)
        self._rotate_bytes = rotate_bytes
        self._backups = backups
        self._fsync = fsync
        self._encoder = resolve_encoder(encoder, owner="JsonLinesFileSink")
        self._fd: int | None = None
        self._size = 0
        self._torn = False  # the file may end in part of a line that could not be cut back
        self._repr_values = 0
        self._rotations = 0

    @property
    def path(self) -> str:
        """The file written to."""
        return self._path

    @property
    def encoder(self) -> Literal["json", "orjson"]:
        """The encoder in use: ``"json"`` or ``"orjson"``."""
        return self._encoder

    @property
    def repr_values(self) -> int:
        """How many field values were written as ``repr()`` strings (JSON has no form for them)."""
        return self._repr_values

    @property
    def rotations(self) -> int:
        """How many times the file was rotated."""
        return self._rotations

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        """Encode ``events`` and append them with one write (plus ``fsync`` if asked).

        Raises:
            OSError: If the file cannot be opened, rotated or written; nothing of the
                batch stays in the file.
        """
        encoded = encode_batch(events, self._encoder)
        self.write_lines(encoded.data, repr_values=encoded.repr_values)

    def write_lines(self, lines: bytes, *, repr_values: int = 0) -> None:
        """Append already encoded JSON lines with one write (plus ``fsync`` if asked).

        The second half of `write_batch`, for a writer that encoded the events itself
        (see `botperf.BatchMetricsWriter`): rotation, torn-line mending and the cut
        back after a partial write work the same, once per call.

        Args:
            lines: Whole lines, each ending in a newline, as `encode_batch` makes them.
            repr_values: How many values in them were written as ``repr()`` strings;
                added to `repr_values` once the lines are written.

        Raises:
            OSError: If the file cannot be opened, rotated or written; nothing of
                ``lines`` stays in the file.
        """
        fd = self._open() if self._fd is None else self._fd
        if self._should_rotate(len(lines)):
            self._rotate()
            fd = self._open()
        # After a partial write that could not be cut back, or on a file whose last
        # line is whole but unterminated, end that line first, so the batch's lines
        # stay whole.
        data = b"\n" + lines if self._torn else lines
        _, error = self._append(fd, data, keep_whole_lines=False)
        if error is not None:
            raise error
        self._repr_values += repr_values

    def close(self) -> None:
        """Close the file; a later batch opens it again."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        # Read access too: to look at the end of a file a crashed writer left.
        fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            self._size = self._mend_end(fd, os.fstat(fd).st_size)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def _mend_end(self, fd: int, size: int) -> int:
        """Make ``fd``'s file end on a line boundary before appending; return its size.

        A writer killed in the middle of a write can leave the file ending in part of
        a line. Appending to it would glue the next event onto that fragment and break
        the file in its middle, so the fragment is cut off (it was never a whole
        event) and a warning logged. A last line that is a whole JSON object without
        its newline is one `botperf.read_metrics` returns: it is kept, and the
        next batch starts with the newline it lacks. Reads the file backwards to the
        last newline: O(length of the last line).
        """
        self._torn = False
        if size == 0 or _read_at(fd, size - 1, 1) == b"\n":
            return size
        line_start = size
        while line_start > 0:
            block_start = max(0, line_start - _TAIL_BLOCK)
            newline = _read_at(fd, block_start, line_start - block_start).rfind(b"\n")
            if newline >= 0:
                line_start = block_start + newline + 1
                break
            line_start = block_start
        fragment = size - line_start
        if fragment <= _MAX_LINE_CHECKED and _is_json_object(_read_at(fd, line_start, fragment)):
            self._torn = True
            return size
        try:
            os.ftruncate(fd, line_start)
        except OSError as exc:
            self._torn = True
            logger.error(
                "%s ends in a torn line of %d bytes that could not be cut off (%r); "
                "read_metrics will report it; the next batch starts on a new line",
                self._path,
                fragment,
                exc,
            )
            return size
        logger.warning(
            "dropped the torn last line of %s (%d bytes, not a whole event; a writer "
            "was probably killed while writing it) before appending to it",
            self._path,
            fragment,
        )
        return line_start

    def _should_rotate(self, incoming: int) -> bool:
        return (
            self._rotate_bytes is not None
            and self._size > 0
            and self._size + incoming > self._rotate_bytes
        )

    def _rotate(self) -> None:
        self.close()
        for number in range(self._backups - 1, 0, -1):
            older = f"{self._path}.{number}"
            if os.path.exists(older):
                os.replace(older, f"{self._path}.{number + 1}")
        os.replace(self._path, f"{self._path}.1")
        self._rotations += 1

    def _append(
        self, fd: int, data: bytes, *, keep_whole_lines: bool
    ) -> tuple[int, OSError | None]:
        """Append ``data`` to the file (then ``fsync`` if asked); cut a failed append back.

        The system may write only part of ``data`` (a full disk). The file is then cut
        back to where ``data`` began, or with ``keep_whole_lines`` to the end of the last
        whole line written, so it never ends in part of a line; should even that fail,
        the file is marked torn and the next append starts on a new line.

        Returns:
            How many bytes of ``data`` stay in the file, and the error that stopped the
            rest (``None`` if all of it was written).
        """
        start = self._size
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, data[written:] if written else data)
            if self._fsync:
                os.fsync(fd)
        except OSError as exc:
            kept = data.rfind(b"\n", 0, written) + 1 if keep_whole_lines else 0
            if written > kept and not self._cut_back(fd, start + kept):
                kept = written  # the fragment stays; _cut_back marked the file torn
            elif kept:
                self._torn = False  # the file now ends in a newline of ours
            self._size = start + kept
            return kept, exc
        self._size = start + written
        self._torn = False
        return written, None

    def _cut_back(self, fd: int, size: int) -> bool:
        """Truncate the file to ``size`` bytes; on failure, log it and mark the file torn."""
        try:
            os.ftruncate(fd, size)
        except OSError:
            self._torn = True
            logger.error(
                "could not cut %s back after a partial write: it holds part of a line, "
                "which read_metrics will report; the next batch starts on a new line",
                self._path,
            )
            return False
        return True


def save_lines(path: str, data: bytes) -> tuple[int, OSError | None]:
    """Append JSON lines to ``path`` as a last resort; return how many of them it holds.

    For events a sink never took (see `botperf.MetricsNotWrittenError`). The file is
    mended and appended to as `JsonLinesFileSink` does it, so a line never glues onto
    a torn line an earlier save or a killed process left. Unlike a batch, a save that
    the disk cuts short keeps the whole lines it wrote, each one event saved, and is cut
    back to the end of the last of them. A file this call created is removed again if
    nothing could be saved in it.

    Args:
        path: The file to append to; created if missing.
        data: Whole lines, each ending in a newline (as `encode_batch` makes them).

    Returns:
        How many lines of ``data`` are now in the file, whole, and the error that stopped
        the rest (``None`` if every line was saved).
    """
    existed = os.path.lexists(path)
    sink = JsonLinesFileSink(path, encoder="json")
    saved = 0
    error: OSError | None = None
    try:
        fd = sink._open()
        # After a whole last line without its newline, end that line first.
        skip = 1 if sink._torn else 0
        lines = b"\n" + data if skip else data
        kept, error = sink._append(fd, lines, keep_whole_lines=True)
        saved = lines.count(b"\n", skip, kept)
    except OSError as exc:
        error = exc
    finally:
        try:
            sink.close()
        except OSError as exc:  # the lines may not have reached the disk after all
            error = error or exc
    if not saved and not existed:
        with contextlib.suppress(OSError):  # not ours to clean if it is not empty
            if os.stat(path).st_size == 0:
                os.remove(path)
    return saved, error


def check_file_options(
    owner: str, *, rotate_bytes: object, backups: object, encoder: object
) -> None:
    """Check the options of a JSON-lines file given to ``owner``.

    Raises:
        InvalidOptionError: If one is of the wrong type or out of its range.
    """
    if rotate_bytes is not None:
        check_int_option(owner, "rotate_bytes", rotate_bytes, minimum=1)
    check_int_option(owner, "backups", backups, minimum=1)
    resolve_encoder(encoder, owner=owner)


def _read_at(fd: int, offset: int, size: int) -> bytes:
    """Read ``size`` bytes at ``offset`` (``os.pread`` is missing on Windows)."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _is_json_object(line: bytes) -> bool:
    """Whether ``line`` parses as a JSON object, as `botperf.read_metrics` reads lines."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    except RecursionError:  # nested deeper than the parser goes: no event read_metrics returns
        return False


@final
class _CallableSink:
    """A plain function used as a sink: it receives each batch."""

    def __init__(self, function: Callable[[list[dict[str, Any]]], object]) -> None:
        self._function = function

    def __repr__(self) -> str:
        name = getattr(self._function, "__qualname__", None)
        if name is None:
            return f"<function sink {self._function!r}>"
        module = getattr(self._function, "__module__", None)
        return f"<function sink {module}.{name}>" if module else f"<function sink {name}>"

    def write_batch(self, events: list[dict[str, Any]]) -> None:
        self._function(events)

    def close(self) -> None:
        """Nothing to release: the function owns its resources."""


def as_sink(
    target: str | os.PathLike[str] | MetricsSink | Callable[[list[dict[str, Any]]], object],
    *,
    rotate_bytes: int | None,
    backups: int,
    fsync: bool,
    encoder: EncoderName,
) -> MetricsSink:
    """Return the sink for ``target``: a file path, a `MetricsSink`, or a function.

    Raises:
        InvalidOptionError: If file options are invalid, or given with a sink or function.
        TypeError: If ``target`` is none of those.
    """
    owner = "BatchMetricsWriter"
    check_file_options(owner, rotate_bytes=rotate_bytes, backups=backups, encoder=encoder)
    if isinstance(target, (str, os.PathLike)):
        return JsonLinesFileSink(
            target, rotate_bytes=rotate_bytes, backups=backups, fsync=fsync, encoder=encoder
        )
    for option, value, default in (
        ("rotate_bytes", rotate_bytes, None),
        ("fsync", fsync, False),
        ("encoder", encoder, "auto"),
    ):
        if value != default:
            raise InvalidOptionError(
                owner,
                option,
                value,
                f"left at {default!r} with a sink or function: file options apply to a "
                "file path; pass them to JsonLinesFileSink(...) or handle them in your sink",
            )
    if isinstance(target, MetricsSink):
        return target
    if callable(target):
        return _CallableSink(target)
    raise TypeError(
        "BatchMetricsWriter writes to a file path, a MetricsSink (write_batch and close) "
        f"or a function taking a list of events, not {type(target).__name__}"
    )
