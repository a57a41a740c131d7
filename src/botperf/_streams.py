"""Shared streams: one upstream iteration per key, replayed to every consumer from one buffer.

A stream is hosted like a `botperf.Deduplicator` execution (see ``_hosting``):
its upstream async iterator runs in a task the Deduplicator owns, never in a
consumer's, and appends each chunk to one list, the shared buffer. Each consumer is
a `SharedStream` with a cursor into that list: it reads what is buffered
without suspending and otherwise waits to be notified of the next chunk. So a slow
consumer only lags behind, it never holds up the upstream or the others, and a late
joiner starts at index 0. The list is the reply's only copy, whatever the number of
consumers; the flight keeps it in ``result`` and counts the consumers in ``waiters``.
"""

from __future__ import annotations

import logging
import reprlib
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, final

from ._hosting import Flight

__all__ = ["AbandonStream", "JoinStream", "SharedStream"]

logger = logging.getLogger(__name__)

T_co = TypeVar("T_co", covariant=True)

# The interface through which a consumer meets the Deduplicator hosting its upstream, so
# that neither module reaches into the other: `JoinStream` counts the consumer in and
# returns the flight it joined (None for a replay from the cache) with the shared buffer;
# `AbandonStream` is told that a running flight's last consumer has left.
JoinStream = Callable[[], "tuple[Flight | None, list[Any]]"]
AbandonStream = Callable[[Flight], None]


@final
class SharedStream(Generic[T_co]):
    """One consumer of a stream shared by every concurrent caller with an equal key.

    Returned by `Deduplicator.stream()` and by functions decorated with
    `@deduplicate` that are async generator functions. Iterate it with `async for`;
    it yields every chunk of the shared upstream, from the first, in order, once each,
    then ends as the upstream did (or raises its exception).

    It joins the stream at the first `__anext__()`, as an async generator starts its
    body there: that is when the call is counted in `DedupStats` and when an upstream
    is started if none runs for the key. Buffered chunks are returned without
    suspending; it suspends only to wait for a chunk not produced yet.

    It leaves the stream when it ends, when `aclose()` is called (directly or through
    `contextlib.aclosing`), when a cancellation interrupts `__anext__()` (as it would
    end an async generator), or when it is garbage-collected mid-stream (a `break`
    out of `async for`). Once its last consumer has left, the upstream is cancelled
    and closed, unless the Deduplicator has `cancel_abandoned=False`. Use one object
    per consumer task; iterating it from two tasks at once is not supported.
    """

    __slots__ = ("_chunks", "_closed", "_cursor", "_flight", "_join", "_key", "_on_abandon")

    def __init__(self, key: Hashable, join: JoinStream, on_abandon: AbandonStream) -> None:
        self._key = key
        self._join = join
        self._on_abandon = on_abandon
        self._flight: Flight | None = None
        # The shared buffer (the flight's, or a cached replay's); None before joining
        # and after leaving.
        self._chunks: list[T_co] | None = None
        self._cursor = 0
        self._closed = False

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._chunks is None:
            state = "not started"
        else:
            state = f"read {self._cursor} of {len(self._chunks)} buffered chunks"
        return f"<SharedStream key={reprlib.repr(self._key)} {state}>"

    def __aiter__(self) -> SharedStream[T_co]:
        return self

    async def __anext__(self) -> T_co:
        chunks = self._chunks
        if chunks is None:
            if self._closed:
                raise StopAsyncIteration
            self._flight, chunks = self._join()
            self._chunks = chunks
        cursor = self._cursor
        while cursor == len(chunks):  # read every buffered chunk: wait for the next one
            flight = self._flight
            if flight is None or flight.done:  # a replay from the cache, or the stream ended
                self._leave()
                if flight is not None and flight.error is not None:
                    # As Deduplicator.run() does: an exception object of its own, unless
                    # it is the last consumer, with the upstream's traceback.
                    raise flight.error_for_caller()
                raise StopAsyncIteration
            waiter = flight.wait_for_news()
            try:
                await waiter
            except BaseException:
                flight.unwait(waiter)
                self._leave()
                raise
        self._cursor = cursor + 1
        return chunks[cursor]

    async def aclose(self) -> None:
        """Leave the stream: this consumer yields nothing more; the others are unaffected.

        Closing the last consumer of a running stream cancels its upstream (see the class
        description). It never suspends, and closing twice does nothing.
        """
        self._leave()

    def __del__(self) -> None:
        # `break` out of `async for` calls no aclose() (PEP 533 was deferred); in CPython
        # the iterator is released right there, so this makes a break leave at once.
        if self._flight is not None:
            try:
                self._leave()
            except Exception:  # the event loop may be closed already
                logger.warning(
                    "a consumer of the shared stream for key %s could not leave it when it "
                    "was garbage-collected; close it with contextlib.aclosing()",
                    reprlib.repr(self._key),
                    exc_info=True,
                )

    def _leave(self) -> None:
        flight = self._flight
        self._flight = None
        self._chunks = None
        self._closed = True
        if flight is not None:
            flight.waiters -= 1
            if not flight.waiters and not flight.done:
                self._on_abandon(flight)
