"""BatchMetricsWriter: O(1) event recording on the caller, batched writes off the event loop."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, final

import anyio
import anyio.lowlevel
from typing_extensions import Self

from ._encoding import EncoderName, encode_batch, encode_entries
from ._exceptions import (
    BotperfRuntimeError,
    BotperfValueError,
    InvalidOptionError,
    MetricsNotWrittenError,
    MetricsWriteError,
    safe_repr,
)
from ._options import check_int_option, check_seconds_option
from ._sinks import JsonLinesFileSink, MetricsSink, as_sink, save_lines

__all__ = ["BatchMetricsWriter", "OnFull", "WriterStats"]

logger = logging.getLogger(__name__)

OnFull = Literal["drop_oldest", "drop_new", "block"]
"""What ``record()`` does when the buffer is full: the values of ``on_full``.

See `BatchMetricsWriter` for what each one does.
"""
_ON_FULL = ("drop_oldest", "drop_new", "block")

_now = time.time  # bound once: record() is the hot path

# One waiting event: the time of the record() call, the event name, its fields.
_Entry = tuple[float, str, dict[str, Any]]
_Events = list[dict[str, Any]]

# With a JsonLinesFileSink, record() encodes the oldest max_batch waiting events itself
# once more than this many batches wait (see BatchMetricsWriter._encode_oldest).
_HELP_AFTER_BATCHES = 40


@final
@dataclass(frozen=True, slots=True)
class _Chunk:
    """Events encoded as JSON lines for the file sink, waiting to be written."""

    data: bytes
    count: int  # events, one line each
    repr_values: int


# A batch out of the queue: entries for a sink to get as event dicts, or encoded lines.
_Batch = list[_Entry] | _Chunk


def _merged(chunks: list[_Chunk]) -> _Chunk:
    """One chunk holding ``chunks`` in order, for one write."""
    if len(chunks) == 1:
        return chunks[0]
    return _Chunk(
        b"".join([chunk.data for chunk in chunks]),
        sum(chunk.count for chunk in chunks),
        sum(chunk.repr_values for chunk in chunks),
    )


def _size(batch: _Batch) -> int:
    return batch.count if isinstance(batch, _Chunk) else len(batch)


@final
@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of a `BatchMetricsWriter`'s counters.

    ``recorded == written + dropped + waiting + unwritten`` holds in every snapshot.

    Attributes:
        recorded: Calls to ``record()`` that took an event (including any later dropped).
        written: Events the sink has taken.
        batches: Successful batch writes (one ``write_batch`` call, one ``write`` to a file).
        dropped: Events dropped because the buffer was full.
        failed_writes: Batch writes that raised; each failed batch was kept and retried.
        waiting: Events recorded and not yet written, including a batch kept for retry.
        unwritten: Events the sink never took, saved beside it at close, or lost if
            even saving them failed (`botperf.MetricsNotWrittenError` says how
            many of each).
        repr_values: Field values written as their ``repr()`` string because JSON has no
            form for them (counted by `botperf.JsonLinesFileSink`; 0 for other sinks).
    """

    recorded: int
    written: int
    batches: int
    dropped: int
    failed_writes: int
    waiting: int
    unwritten: int
    repr_values: int


def _events(entries: list[_Entry]) -> _Events:
    """Build new event dicts for one write attempt: ``ts``, ``event``, then the fields."""
    return [{"ts": ts, "event": name, **fields} for ts, name, fields in entries]


def _nothing() -> None:
    """Wake nobody: no flusher runs before the writer is entered."""


def _thread_safe_scheduler(
    token: anyio.lowlevel.EventLoopToken,
) -> Callable[[Callable[[], object]], None]:
    """Return a function that runs a callback soon on the event loop of ``token``, from any thread.

    anyio's `anyio.from_thread.run_sync` waits for the callback's result, which
    would make ``record()`` wait for the event loop; the wake-up only needs scheduling,
    which each backend offers natively (asyncio: ``loop.call_soon_threadsafe``; trio:
    ``TrioToken.run_sync_soon``). Both are found by name, so neither library is imported.
    """
    native = token.native_token
    call_soon = getattr(native, "call_soon_threadsafe", None)
    if call_soon is None:
        call_soon = native.run_sync_soon  # type: ignore[attr-defined]
    return call_soon  # type: ignore[no-any-return]


@final
class BatchMetricsWriter:
    """Records metric events in O(1) and writes them in batches, off the event loop.

    ``record()`` appends to a deque, from any thread; a flusher writes batches in a worker
    thread, retrying failures with backoff. For a file, once the flusher falls 40 batches
    behind, ``record()`` encodes the oldest batch into lines itself and the flusher only
    writes. Use it as ``async with`` (asyncio or trio) or ``with`` (a daemon thread).
    Leaving writes the rest; what the sink still refuses is saved and reported by
    `MetricsNotWrittenError`. The Batched metrics page has more.

    Args:
        path_or_sink: A file path (JSON lines), a `MetricsSink`, or a function of a batch.
        max_batch: Write when this many events wait (at least 1); also how many events
            ``record()`` encodes at a time when it helps a file's flusher.
        max_delay: Seconds after the oldest waiting event by which it is written.
        max_buffer: Most events waiting, batches in flight included (>= ``max_batch``).
        on_full: When full: ``"drop_oldest"`` (default), ``"drop_new"`` or ``"block"``.
        rotate_bytes: For a file path: rotate past this size (see `JsonLinesFileSink`).
        backups: For a file path: rotated files kept.
        fsync: For a file path: ``os.fsync`` after every batch.
        encoder: For a file path: ``"auto"`` (orjson if importable), ``"json"``, ``"orjson"``.
        retry_delay: Seconds before the first retry; doubles up to ``max_retry_delay``.
        max_retry_delay: The longest wait between retries, which go on for the outage.
        unwritten_path: Where events never written are saved at close.

    Raises:
        InvalidOptionError: If an option has the wrong type or is out of its range.
        TypeError: If ``path_or_sink`` is not a path, sink or function.
    """

    def __init__(
        self,
        path_or_sink: str | os.PathLike[str] | MetricsSink | Callable[[_Events], object],
        *,
        max_batch: int = 50,
        max_delay: float = 60.0,
        max_buffer: int = 10_000,
        on_full: OnFull = "drop_oldest",
        rotate_bytes: int | None = None,
        backups: int = 5,
        fsync: bool = False,
        encoder: EncoderName = "auto",
        retry_delay: float = 0.5,
        max_retry_delay: float = 60.0,
        unwritten_path: str | os.PathLike[str] | None = None,
    ) -> None:
        owner = "BatchMetricsWriter"
        self._max_batch = check_int_option(owner, "max_batch", max_batch, minimum=1)
        self._max_delay = check_seconds_option(owner, "max_delay", max_delay)
        self._max_buffer = check_int_option(owner, "max_buffer", max_buffer, minimum=1)
        if max_buffer < max_batch:
            raise InvalidOptionError(
                owner, "max_buffer", max_buffer, f"an int of at least max_batch ({max_batch})"
            )
        if on_full not in _ON_FULL:
            raise InvalidOptionError(
                owner, "on_full", on_full, f"one of {', '.join(map(repr, _ON_FULL))}"
            )
        self._on_full = on_full
        self._retry_delay = check_seconds_option(owner, "retry_delay", retry_delay)
        self._max_retry_delay = check_seconds_option(owner, "max_retry_delay", max_retry_delay)
        if max_retry_delay < retry_delay:
            raise InvalidOptionError(
                owner,
                "max_retry_delay",
                max_retry_delay,
                f"at least retry_delay ({retry_delay} seconds)",
            )
        self._sink = as_sink(
            path_or_sink, rotate_bytes=rotate_bytes, backups=backups, fsync=fsync, encoder=encoder
        )
        self._unwritten_path = None if unwritten_path is None else os.fspath(unwritten_path)

        # record() appends to the deque without the lock (deque.append is atomic, and a
        # lock would double its cost); everything else below is guarded by _lock, and
        # writes are serialised by _write_lock so batches reach the sink in order.
        # _encode_lock serialises taking events out of the queue with encoding them into
        # _chunks, so chunks stay in order and no batch is out of sight while half done;
        # lock order: _write_lock, then _encode_lock, then _lock.
        self._lock = threading.Lock()
        self._room_freed = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._queue: deque[_Entry] = deque()
        self._dequeued = 0  # events ever taken out of the queue: flush() counts by it
        # The file sink's lines encoded by record() (or the flusher), older than every
        # event in the queue; their events count in _taken, as a batch in flight does.
        self._file = self._sink if isinstance(self._sink, JsonLinesFileSink) else None
        self._chunks: deque[_Chunk] = deque()
        self._helped_at = -math.inf  # time.monotonic() of the last chunk record() encoded
        self._high_water = (
            sys.maxsize
            if self._file is None
            else max(max_batch, min(_HELP_AFTER_BATCHES * max_batch, max_buffer - max_batch))
        )
        # Past half of max_buffer in flight, record() also yields the GIL once per chunk.
        self._yield_above = max_buffer // 2
        self._taken = 0  # events out of the queue whose write has not succeeded yet
        self._room = max_buffer  # max_buffer - _taken: the queue length that means full
        # A failed batch kept for retry. As entries for a sink of event dicts: each
        # attempt gets new event dicts, whatever the sink did to those of the attempt
        # before. As encoded lines for the file sink.
        self._held: _Batch | None = None
        self._retry_at: float | None = None  # time.monotonic() of the next retry
        self._failures_in_row = 0
        # The wait after the next failure: doubled after each one and capped, never
        # computed as a power of 2, which overflows a float after 1,024 failures.
        self._next_retry_delay = self._retry_delay
        self._written = 0
        self._batches = 0
        self._dropped = 0
        self._unlogged_drops = 0
        self._failed_writes = 0
        self._unwritten = 0
        self._blocked = 0
        self._accepting = True
        self._drained = False  # set by the final drain once the queue is empty for good
        self._closed = False  # set, under the write lock, once closing has finished
        self._entered = False
        self._stopping = False

        self._wake: Callable[[], None] = _nothing
        # True from a wake-up until the flusher next looks at the queue, so that
        # record() wakes it once per look, not once per event while a batch waits.
        self._wake_pending = False
        self._loop_thread: int | None = None
        self._schedule: Callable[[Callable[[], object]], None] | None = None
        self._wakeup: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._thread: threading.Thread | None = None
        self._thread_wakeup = threading.Event()

    def __repr__(self) -> str:
        return f"<BatchMetricsWriter to {self._describe_sink()} max_batch={self._max_batch}>"

    @property
    def sink(self) -> MetricsSink:
        """The sink batches are written to (a `JsonLinesFileSink` for a path)."""
        return self._sink

    @property
    def stats(self) -> WriterStats:
        """A consistent snapshot of the writer's counters; O(1)."""
        repr_values = self._sink.repr_values if isinstance(self._sink, JsonLinesFileSink) else 0
        with self._lock:
            return WriterStats(
                recorded=self._written
                + self._dropped
                + len(self._queue)
                + self._taken
                + self._unwritten,
                written=self._written,
                batches=self._batches,
                dropped=self._dropped,
                failed_writes=self._failed_writes,
                waiting=len(self._queue) + self._taken,
                unwritten=self._unwritten,
                repr_values=repr_values,
            )

    def record(self, event: str, /, **fields: Any) -> None:
        """Record one event with its fields, timestamped now; O(1), never does I/O.

        The event waits in memory until its batch is written by the flusher, which also
        encodes it, so the call itself is only a timestamp and an append to a deque (no
        lock unless the buffer is full). The encoding still costs CPU in this process,
        in the flusher's thread: the Performance page gives both figures. For a file,
        once more than 40 batches wait (at most ``max_buffer - max_batch``), the flusher
        has fallen behind, and the call that finds them also encodes the oldest
        ``max_batch`` events into lines, on the calling thread, the event loop's
        included: that call costs the encoding of a batch, about one call in
        ``max_batch`` while the flood lasts. It never waits for another thread's
        encoding, nor for the disk; past half of ``max_buffer`` in flight it also lets
        the flusher run, with ``time.sleep(0)`` once per batch it encodes. Safe from
        any thread and any task, from before the writer is entered until it is closed.

        Args:
            event: The event's name, written as ``event``.
            **fields: The event's fields, written after ``ts`` and ``event``. Values
                JSON cannot hold are written as their ``repr()`` string.

        Raises:
            ValueError: If a field is named ``ts`` or ``event``.
            RuntimeError: If the writer is closed.
            RuntimeError: With ``on_full="block"`` and a full buffer, where
                waiting could never end (see ``on_full``).
        """
        if "ts" in fields or "event" in fields:
            field = "ts" if "ts" in fields else "event"
            raise BotperfValueError(
                f"record({event!r}, {field}=...): the field name {field!r} is reserved, the "
                "writer sets it (ts: the time of the call, event: the name); rename the field"
            )
        queue = self._queue
        if len(queue) >= self._room:
            self._record_carefully(event, fields)
            return
        entry = (_now(), event, fields)
        queue.append(entry)
        waiting = len(queue)
        # ">=", not "==": two threads appending at once can both read max_batch + 1.
        if waiting >= self._max_batch:
            if not self._wake_pending:
                self._wake_pending = True
                self._wake()
            if waiting > self._high_water:  # the flusher falls behind: help it
                self._encode_oldest()
        elif waiting == 1 and not self._wake_pending:
            self._wake_pending = True
            self._wake()
        if not self._accepting:  # checked after the append: see _recorded_while_closing
            self._recorded_while_closing(entry)

    async def flush(self) -> None:
        """Write every event recorded so far, in a worker thread, and return when written.

        Usable in both modes (and before entering). A batch kept for retry is tried
        at once, whatever its backoff. A flush that meets the writer closing waits for
        the close to finish.

        Raises:
            MetricsWriteError: If a batch write failed; that batch is kept and retried
                with backoff by the flusher, and the error says how many events wait.
            RuntimeError: If the writer has closed with events its sink
                would not take (the close raised `botperf.MetricsNotWrittenError`
                for them).
        """
        await anyio.to_thread.run_sync(self._flush_blocking)

    def flush_sync(self) -> None:
        """Write every event recorded so far, blocking the calling thread until written.

        The sync twin of `flush`, for ``with`` writers and other threads.

        Raises:
            MetricsWriteError: As `flush`.
            RuntimeError: If called on the event loop thread of an
                ``async with`` writer, where it would block the loop: ``await flush()``;
                or as `flush`, after a close that left events unwritten.
        """
        if self._loop_thread == threading.get_ident():
            raise BotperfRuntimeError(
                "flush_sync() would block the event loop this writer runs on; "
                "use 'await writer.flush()' there"
            )
        self._flush_blocking()

    async def __aenter__(self) -> Self:
        self._enter("async with")
        self._loop_thread = threading.get_ident()
        self._schedule = _thread_safe_scheduler(anyio.lowlevel.current_token())
        self._wakeup = anyio.Event()
        self._wake = self._wake_loop
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(
            self._flush_in_task, name=f"botperf flusher for {self._describe_sink()}"
        )
        if self._queue:
            self._wake_loop()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_accepting()
        task_group = self._task_group
        assert task_group is not None
        task_group.cancel_scope.cancel()
        try:
            # The body's own exception is not the task group's business: passing it in
            # would wrap it in an ExceptionGroup. Only a crashed flusher raises here.
            await task_group.__aexit__(None, None, None)
        finally:
            self._loop_thread = None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close_blocking)

    def __enter__(self) -> Self:
        self._enter("with")
        self._wake = self._thread_wakeup.set
        self._thread = threading.Thread(
            target=self._flush_in_thread,
            name=f"botperf flusher for {self._describe_sink()}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_accepting()
        self._stopping = True
        self._thread_wakeup.set()
        assert self._thread is not None
        try:
            self._thread.join()
        finally:
            self._close_blocking()

    # -- recording ---------------------------------------------------------------------

    def _record_carefully(self, event: str, fields: dict[str, Any]) -> None:
        """Record under the lock: the buffer is full or the writer is closing."""
        with self._lock:
            if not self._accepting:
                raise BotperfRuntimeError(
                    f"record({event!r}): this metrics writer is closed; record before it closes"
                )
            if len(self._queue) + self._taken >= self._max_buffer:
                if self._on_full == "block":
                    self._wait_for_room()
                else:
                    self._dropped += 1
                    self._unlogged_drops += 1
                    if self._on_full == "drop_new" or not self._queue:
                        return
                    self._queue.popleft()
                    self._dequeued += 1
            self._queue.append((time.time(), event, fields))
            waiting = len(self._queue)
        if (waiting == 1 or waiting >= self._max_batch) and not self._wake_pending:
            self._wake_pending = True
            self._wake()

    def _recorded_while_closing(self, entry: _Entry) -> None:
        """Undo an append to a closed writer and raise; keep it if the final drain takes it.

        The final drain marks the queue drained under the lock once it is empty, so an
        event appended before that is written (or saved), and one appended after it
        is taken back. Only an event taken back raises: one the drain took was
        recorded, and raising would invite the caller to record it twice.
        """
        with self._lock:
            if not self._drained:
                return  # the final drain has yet to empty the queue: it writes the event
            # list() copies in C, atomically; iterating the deque itself could meet an
            # append from another thread and raise.
            for index, waiting in enumerate(list(self._queue)):
                if waiting is entry:
                    del self._queue[index]
                    break
            else:
                return  # the final drain took it before marking the queue drained
        raise BotperfRuntimeError(
            f"record({entry[1]!r}): this metrics writer is closed; record before it closes"
        )

    def _encode_oldest(self) -> None:
        """Encode the oldest ``max_batch`` waiting events into lines, on the recording thread.

        For a file sink only, once more than the high-water mark of events wait: the
        flusher has fallen behind (it waits for the GIL the recording thread holds, and
        events another core made cost it several times more to encode), so the
        recording thread encodes for it, and the flusher only writes. CPU only, no I/O:
        it runs on whatever thread records, the event loop's included. It only tries
        the encode lock and returns at once if another thread holds it, so record()
        never waits for a slow disk. With more than half of ``max_buffer`` in flight,
        the flusher may not have had the GIL for a whole switch interval, so it yields
        the GIL once (``time.sleep(0)``) rather than let the buffer fill and drop.
        """
        if not self._encode_lock.acquire(blocking=False):
            return
        try:
            with self._lock:
                if self._drained or len(self._queue) <= self._high_water:
                    return
                entries = self._take(self._max_batch)
            try:
                chunk = self._encode(entries)
            except BaseException:
                # An interrupt (or an encoder bug) in the middle: the events go back in
                # front of the queue. They are still its oldest: the flusher takes from
                # it only under the encode lock, and a drop takes a newer event.
                with self._lock:
                    self._queue.extendleft(reversed(entries))
                    self._dequeued -= len(entries)
                    self._taken -= len(entries)
                    self._room = self._max_buffer - self._taken
                raise
            with self._lock:
                self._chunks.append(chunk)
                self._helped_at = time.monotonic()
        finally:
            self._encode_lock.release()
        # The flusher may have looked between the take and the append, seen neither
        # the events nor the chunk, and gone to sleep.
        if not self._wake_pending:
            self._wake_pending = True
            self._wake()
        if self._taken > self._yield_above:
            time.sleep(0)

    def _take_chunks(self) -> list[_Chunk]:
        """Take every encoded chunk, oldest first (``_lock`` held; merge them after it)."""
        chunks = list(self._chunks)
        self._chunks.clear()
        return chunks

    def _take(self, count: int) -> list[_Entry]:
        """Take the ``count`` oldest events out of the queue, as in flight (``_lock`` held)."""
        pop = self._queue.popleft
        entries = [pop() for _ in range(count)]
        self._dequeued += count
        self._taken += count
        self._room = self._max_buffer - self._taken
        return entries

    def _encode(self, entries: list[_Entry]) -> _Chunk:
        """Encode ``entries`` as the file sink's lines (CPU only, no lock needed)."""
        assert self._file is not None
        encoded = encode_entries(entries, self._file.encoder)
        return _Chunk(encoded.data, len(entries), encoded.repr_values)

    def _wait_for_room(self) -> None:
        if self._loop_thread == threading.get_ident():
            raise self._buffer_full("on the event loop thread the writer runs on")
        if not self._entered:
            raise self._buffer_full("before the writer is entered")
        self._blocked += 1
        try:
            while self._accepting and len(self._queue) + self._taken >= self._max_buffer:
                self._room_freed.wait()
        finally:
            self._blocked -= 1
        if not self._accepting:
            raise BotperfRuntimeError("this metrics writer closed while record() waited for room")

    def _buffer_full(self, where: str) -> RuntimeError:
        return BotperfRuntimeError(
            f"the metrics buffer is full ({self._max_buffer} events) and on_full='block' "
            f"cannot wait {where}; record from another thread, raise max_buffer, "
            "or use on_full='drop_oldest' or 'drop_new'"
        )

    def _wake_loop(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._set_wakeup()
            return
        assert self._schedule is not None
        # RuntimeError: the event loop has finished, so the writer closed after this
        # event was taken and its final drain wrote it; nothing is left to wake.
        with contextlib.suppress(RuntimeError):
            self._schedule(self._set_wakeup)

    def _set_wakeup(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- flushing ----------------------------------------------------------------------

    # While nothing waits, both flushers still look again every max_delay: two threads
    # racing in record() can both miss the "first waiting event" wake-up, and this
    # bounds how late that event can be written (2 * max_delay).

    async def _flush_in_task(self) -> None:
        while True:
            self._wakeup = anyio.Event()
            self._wake_pending = False  # before looking: a later append wakes us again
            delay = self._due_in()
            if delay == 0:
                await anyio.to_thread.run_sync(self._write_due)
                continue
            with anyio.move_on_after(self._max_delay if delay is None else delay):
                await self._wakeup.wait()

    def _flush_in_thread(self) -> None:
        while True:
            self._thread_wakeup.clear()
            self._wake_pending = False  # before looking: a later append wakes us again
            if self._stopping:
                return
            delay = self._due_in()
            if delay == 0:
                self._write_due()
                continue
            self._thread_wakeup.wait(self._max_delay if delay is None else delay)

    def _due_in(self) -> float | None:
        """Seconds until a write is due: 0 now, ``None`` while nothing waits."""
        with self._lock:
            if self._retry_at is not None:
                return max(0.0, self._retry_at - time.monotonic())
            if self._held is not None or self._chunks:
                return 0.0
            if len(self._queue) >= self._max_batch:
                # While record() encodes (it did within a GIL switch interval), leave the
                # queue to it: this thread would encode events another core just made,
                # at several times the cost, holding the GIL the recorder waits for.
                since = time.monotonic() - self._helped_at
                interval = sys.getswitchinterval()
                return 0.0 if since >= interval else interval - since
            if not self._queue:
                return None
            oldest = self._queue[0][0]
        return min(max(0.0, oldest + self._max_delay - time.time()), self._max_delay)

    def _write_due(self) -> None:
        """Write the batches due now, until none is or one fails (worker/flusher thread)."""
        self._log_drops()  # here, not on the event loop: logging may do I/O
        with self._write_lock:
            while self._due_in() == 0:
                if self._write_one(self._max_batch) is not None:
                    return

    def _flush_blocking(self) -> None:
        """Write the held batch and every event waiting now, in batches (any thread).

        Waits for writes in flight and for a close in progress: after a close, every
        event was written or reported by it, and only the count is left to tell.
        """
        with self._write_lock:
            if self._closed:
                with self._lock:
                    unwritten = self._unwritten
                if unwritten:
                    raise BotperfRuntimeError(
                        f"this metrics writer is closed: {unwritten} events it could not "
                        "write were reported by MetricsNotWrittenError at close"
                    )
                return
            self._flush_locked(final=False)
        self._log_drops()

    def _flush_locked(self, *, final: bool) -> None:
        """Write the held batch and the waiting events (write lock held).

        With ``final``, keep going until the queue is empty and mark it drained, so a
        record() racing with close either gets written or raises.
        """
        with self._lock:
            # The events to write: those taken out of the queue until the last one
            # waiting now is, whoever takes them (record() may encode some meanwhile).
            last = math.inf if final else self._dequeued + len(self._queue)
        while True:
            # Under the encode lock: no record() is half way through encoding a chunk,
            # so an empty queue with no chunk means nothing is left.
            with self._encode_lock, self._lock:
                if self._held is not None or self._chunks:
                    size = 0  # these go first: they are older than the queue
                else:
                    size = int(min(self._max_batch, last - self._dequeued, len(self._queue)))
                    if size <= 0:
                        self._drained = final
                        break
            error = self._write_one(size)
            if error is not None:
                with self._lock:
                    waiting = len(self._queue) + self._taken
                raise MetricsWriteError(waiting, self._describe_sink(), error) from error

    def _next_batch(self, limit: int) -> _Batch | None:
        """Take the batch to write next: the held one, every chunk as one, or ``limit`` events.

        Taking chunks needs only ``_lock``: the flusher of an overloaded writer gets the
        GIL back seldom, and should not spend that turn waiting for the encode lock.
        Taking events from the queue needs the encode lock, so that no chunk of older
        events is half encoded meanwhile; for the file sink they are encoded under it.
        Chunks are merged outside ``_lock``, which record() may be waiting for.
        """
        with self._lock:
            if self._held is not None:
                return self._held
            chunks = self._take_chunks()
        if chunks:
            return _merged(chunks)
        with self._encode_lock:
            with self._lock:
                chunks = self._take_chunks()
                if not chunks:
                    count = min(limit, len(self._queue))
                    if count == 0:
                        return None
                    entries = self._take(count)
            if chunks:
                return _merged(chunks)
            if self._file is None:
                return entries
            try:
                return self._encode(entries)
            except BaseException:
                with self._lock:
                    self._held = entries  # for the next write or the save at close
                raise

    def _write_one(self, limit: int) -> Exception | None:
        """Write the held batch, or the encoded chunks, or up to ``limit`` events (write lock held).

        Every chunk waiting goes in one write, as one batch (see `_next_batch`).

        Returns:
            ``None`` if written (or nothing waited), else the exception the sink raised;
            the batch is then held for retry.
        """
        batch = self._next_batch(limit)
        if batch is None:
            return None
        try:
            if isinstance(batch, _Chunk):
                assert self._file is not None
                self._file.write_lines(batch.data, repr_values=batch.repr_values)
            else:
                self._sink.write_batch(_events(batch))
        except Exception as exc:  # of any kind: a sink failure never stops the flusher
            with self._lock:
                self._held = batch
                self._failed_writes += 1
                self._failures_in_row += 1
                failures = self._failures_in_row
                delay = self._next_retry_delay
                # A float product never raises: at worst inf, which the cap replaces.
                self._next_retry_delay = min(delay * 2.0, self._max_retry_delay)
                self._retry_at = time.monotonic() + delay
            logger.warning(
                "could not write %d metric events to %s (failure %d in a row: %s); "
                "kept them, retrying in %.3g s",
                _size(batch),
                self._describe_sink(),
                failures,
                safe_repr(exc),
                delay,
            )
            return exc
        except BaseException:
            # Ctrl-C (or SystemExit) landed in the sink: the batch may not be written.
            # Keep it for the next write or the save at close instead of losing it
            # silently; the interruption itself is not ours to stop.
            with self._lock:
                self._held = batch
            raise
        count = _size(batch)
        with self._lock:
            self._held = None
            self._retry_at = None
            self._failures_in_row = 0
            self._next_retry_delay = self._retry_delay
            self._taken -= count
            self._room = self._max_buffer - self._taken
            self._written += count
            self._batches += 1
            if self._blocked:
                self._room_freed.notify_all()
        return None

    def _log_drops(self) -> None:
        with self._lock:
            dropped, self._unlogged_drops = self._unlogged_drops, 0
        if dropped:
            logger.warning(
                "dropped %d metric events for %s: the buffer was full (max_buffer=%d, "
                "on_full=%r); writes are failing or too slow, raise max_buffer or max_batch",
                dropped,
                self._describe_sink(),
                self._max_buffer,
                self._on_full,
            )

    # -- lifecycle ---------------------------------------------------------------------

    def _enter(self, how: str) -> None:
        with self._lock:
            if self._entered or not self._accepting:
                raise BotperfRuntimeError(
                    f"{how}: a BatchMetricsWriter is entered once; create a new one"
                )
            self._entered = True

    def _stop_accepting(self) -> None:
        with self._lock:
            self._accepting = False
            self._room_freed.notify_all()

    def _close_blocking(self) -> None:
        """Write what is left, close the sink, and save what it would not take (any thread).

        Holds the write lock throughout: a write in flight from another thread (a
        ``flush_sync()``, an ``await flush()``) finishes before closing starts, and one
        started meanwhile waits until closing is over, so no batch can be out of the
        writer's hands while what is left is counted and saved. If the final writes are
        interrupted (Ctrl-C during a write), what is left is still saved, the save is
        logged, and the interruption propagates.
        """
        with self._write_lock:
            if self._closed:
                return
            error: Exception | None = None
            try:
                self._flush_locked(final=True)
            except MetricsWriteError as exc:
                error = exc
            except BaseException:
                self._close_sink()
                unwritten = self._save_unwritten()
                self._closed = True
                if unwritten is not None:
                    logger.error("closing was interrupted: %s", unwritten)
                raise
            self._close_sink()
            unwritten = self._save_unwritten() if error is not None else None
            self._closed = True
        self._log_drops()
        if unwritten is not None:
            raise unwritten from error

    def _close_sink(self) -> None:
        try:
            self._sink.close()
        except Exception as exc:
            logger.warning(
                "closing the metrics sink %s failed: %s", self._describe_sink(), safe_repr(exc)
            )

    def _save_unwritten(self) -> MetricsNotWrittenError | None:
        """Take every event not yet written and append them to the unwritten file (write lock held).

        Returns:
            The error that says how many, where, and how many of them were saved, or
            ``None`` if none were left.
        """
        with self._encode_lock, self._lock:
            # In order: the held batch, the chunks encoded after it, then the queue.
            batches: list[_Batch] = [] if self._held is None else [self._held]
            self._held = None
            batches += self._chunks
            self._chunks.clear()
            if self._queue:
                batches.append(self._take(len(self._queue)))
            count = sum(map(_size, batches))
            self._taken = 0
            self._room = self._max_buffer
            self._drained = True
            self._retry_at = None
            self._unwritten += count
        if not count:
            return None
        path = self._unwritten_path or self._default_unwritten_path()
        saved = 0
        save_error: Exception | None = None
        try:
            # Before opening: no empty file. Chunks are whole lines already.
            data = b"".join(
                [
                    batch.data
                    if isinstance(batch, _Chunk)
                    else encode_batch(_events(batch), "json").data
                    for batch in batches
                ]
            )
        except Exception as exc:  # the events are counted as unwritten whatever failed
            save_error = exc
        else:
            try:
                saved, save_error = save_lines(path, data)
            except Exception as exc:  # a path the system refuses outright (a NUL byte)
                save_error = exc
        return MetricsNotWrittenError(count, self._describe_sink(), path, save_error, saved=saved)

    def _default_unwritten_path(self) -> str:
        if isinstance(self._sink, JsonLinesFileSink):
            return f"{self._sink.path}.unwritten.jsonl"
        return os.path.join(tempfile.gettempdir(), f"botperf-metrics-{os.getpid()}.unwritten.jsonl")

    def _describe_sink(self) -> str:
        if isinstance(self._sink, JsonLinesFileSink):
            return repr(self._sink.path)
        return safe_repr(self._sink)
