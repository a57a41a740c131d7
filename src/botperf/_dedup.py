"""Single-flight deduplication of async calls: one execution per key, shared by every caller."""

from __future__ import annotations

import functools
import inspect
import logging
import reprlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast, final, overload

from cachetools import TTLCache
from typing_extensions import ParamSpec

from ._exceptions import (
    BotperfTypeError,
    DedupCancelledError,
    InvalidOptionError,
    StreamTooLongError,
)
from ._hosting import Flight, new_flight
from ._options import check_int_option, check_seconds_option
from ._streams import SharedStream
from ._streams import logger as streams_logger

__all__ = ["DedupStats", "Deduplicator", "deduplicate"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

_MISSING: Any = object()


@final
@dataclass(frozen=True, slots=True)
class DedupStats:
    """A snapshot of a `Deduplicator`'s counters since it was created.

    Every call is counted exactly once as an execution, a shared call or a cache hit,
    so ``calls == executions + shared + cache_hits`` always holds, cancelled callers
    included. Streams count alongside calls: a `SharedStream` counts once, when its
    iteration starts, and the upstream iteration it starts or joins is an execution.

    Attributes:
        calls: Calls of `Deduplicator.run` with a hashable key, and streams started
            iterating.
        executions: Calls that started a new execution of ``fn``.
        shared: Calls that joined an execution already running for their key.
        cache_hits: Calls answered from the ``ttl`` cache without running anything.
        errors: Executions whose outcome, delivered to their callers, was an exception
            (each failed execution counts once, however many callers it reached).
    """

    calls: int
    executions: int
    shared: int
    cache_hits: int
    errors: int


@final
class Deduplicator:
    """Runs concurrent calls with an equal key once, and gives every caller the outcome.

    The first call for a key runs ``fn`` in a task the Deduplicator hosts; later calls
    with that key wait for it and share its outcome. Cancelling a caller affects only
    that caller. `stream` does the same for streamed replies. Works under asyncio and
    trio; not thread-safe. The Deduplicator page of the docs has the timelines.

    Args:
        ttl: Seconds a successful result or stream is served from a cache; ``None``: none.
        max_cached: Most results (and apart from them, streams) cached; at least 1.
        cancel_abandoned: Whether to cancel an execution once every caller has left.
        max_chunks: Most chunks a shared stream buffers (then `StreamTooLongError`).

    Raises:
        InvalidOptionError: If an option is out of its range or of the wrong type.
    """

    __slots__ = (
        "_cache",
        "_cache_hits",
        "_calls",
        "_cancel_abandoned",
        "_detached",
        "_errors",
        "_executions",
        "_flights",
        "_max_chunks",
        "_shared",
        "_stream_cache",
        "_streams",
    )

    def __init__(
        self,
        *,
        ttl: float | None = None,
        max_cached: int = 1024,
        cancel_abandoned: bool = True,
        max_chunks: int = 10_000,
    ) -> None:
        if ttl is not None:
            ttl = check_seconds_option("Deduplicator", "ttl", ttl)
        max_cached = check_int_option("Deduplicator", "max_cached", max_cached, minimum=1)
        max_chunks = check_int_option("Deduplicator", "max_chunks", max_chunks, minimum=1)
        if not isinstance(cancel_abandoned, bool):
            raise InvalidOptionError(
                "Deduplicator", "cancel_abandoned", cancel_abandoned, "True or False"
            )
        self._cache: TTLCache[Hashable, Any] | None = (
            None if ttl is None else TTLCache(maxsize=max_cached, ttl=ttl)
        )
        # Completed streams' chunk lists, apart from results: a key may serve both.
        self._stream_cache: TTLCache[Hashable, list[Any]] | None = (
            None if ttl is None else TTLCache(maxsize=max_cached, ttl=ttl)
        )
        self._cancel_abandoned = cancel_abandoned
        self._max_chunks = max_chunks
        # The running executions that new callers can join, by key.
        self._flights: dict[Hashable, Flight] = {}
        # The running streams that new consumers can join, by key.
        self._streams: dict[Hashable, Flight] = {}
        # Executions and streams no new caller can reach (forgotten, abandoned and being
        # cancelled, or a stream closing its upstream) but still running: held here so
        # their tasks stay referenced.
        self._detached: set[Flight] = set()
        self._calls = 0
        self._executions = 0
        self._shared = 0
        self._cache_hits = 0
        self._errors = 0

    def __repr__(self) -> str:
        return f"<Deduplicator in_flight={self.in_flight} {self.stats}>"

    @property
    def in_flight(self) -> int:
        """How many keys have an execution or a stream running now that new calls would join."""
        return len(self._flights) + len(self._streams)

    @property
    def stats(self) -> DedupStats:
        """A snapshot of the counters; O(1)."""
        return DedupStats(
            calls=self._calls,
            executions=self._executions,
            shared=self._shared,
            cache_hits=self._cache_hits,
            errors=self._errors,
        )

    async def run(
        self, key: Hashable, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Return ``await fn(*args, **kwargs)``, run once for all concurrent calls with ``key``.

        If an execution for ``key`` is running, wait for it; else, if the ``ttl`` cache
        holds a result for ``key``, return it at once (without suspending); else start
        an execution in a task the Deduplicator hosts and wait for it. The cost above
        ``fn`` is O(1): a dict look-up, and a task on a miss.

        Args:
            key: What identifies equal calls; any hashable value.
            fn: The async callable to run; only the first caller's ``fn`` and arguments
                are used for an execution, the others share its outcome.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            The execution's result: the very same object for every caller.

        Raises:
            TypeError: If ``key`` is not hashable.
            DedupCancelledError: If the execution was cancelled from outside the
                Deduplicator while this call waited.
            BaseException: Whatever ``fn`` raised, re-raised to every caller waiting
                at that moment, each with ``fn``'s traceback, cause and context: the
                last caller gets the object ``fn`` raised, the others shallow copies of
                it (of the same type, args and attributes), so that no caller sees
                another's context or frames. An exception that cannot be copied
                faithfully is shared (see the Deduplicator page of the docs).
        """
        # The bookkeeping below is _join_stream's, kept inline: a shared helper's call
        # would add measurably to a cache hit (see the Performance page).
        flights = self._flights
        try:
            flight = flights.get(key)
        except TypeError as exc:
            raise unhashable_key(key, "Deduplicator.run()", str(exc)) from None
        self._calls += 1
        if flight is None:
            cache = self._cache
            if cache is not None:
                cached = cache.get(key, _MISSING)
                if cached is not _MISSING:
                    self._cache_hits += 1
                    return cast(T, cached)
            flight = new_flight(key)
            self._executions += 1
            # Counted before the task starts: on Python 3.12+ it starts eagerly, and an
            # fn failing before its first await must see that a caller is there.
            flight.waiters = 1
            flights[key] = flight
            try:
                flight.start(self._execute, flight, fn, args, kwargs)
            except BaseException:
                del flights[key]
                raise
        else:
            self._shared += 1
            flight.waiters += 1
        if flight.done:  # an eager task that never suspended
            flight.waiters -= 1
        else:
            waiter = flight.wait()
            try:
                await waiter
            finally:
                flight.waiters -= 1
                if not flight.done:  # this caller left early (it was cancelled)
                    flight.unwait(waiter)
                    if not flight.waiters:
                        self._abandon(flight, flights)
        if flight.error is not None:
            raise flight.error_for_caller()
        return cast(T, flight.result)

    def stream(
        self,
        key: Hashable,
        fn: Callable[P, AsyncIterable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> SharedStream[T]:
        """Iterate ``fn(*args, **kwargs)`` once for all concurrent consumers with ``key``.

        Returns at once (it is not a coroutine function) a `SharedStream`: iterate it
        with `async for`. At its first step it joins the stream running for ``key``,
        or replays a completed one from the ``ttl`` cache, or starts the upstream
        ``fn(*args, **kwargs)`` in a task the Deduplicator hosts. Every consumer gets
        every chunk from the first (a late joiner gets the buffered ones at once), in
        order, once each; then the end, or the upstream's exception. The upstream is
        driven by its hosted task, never by a consumer, so a slow consumer delays
        nobody; the chunks wait for it in the one shared buffer, which holds at most
        ``max_chunks`` of them. When the last consumer leaves early, the upstream is
        cancelled and closed (``aclose()``), unless ``cancel_abandoned=False``. A
        successful stream's chunks are replayed for ``ttl`` seconds, if set.

        While iterating, the consumer raises whatever the upstream raised (after the
        chunks before it), `StreamTooLongError` past ``max_chunks``, or
        `DedupCancelledError` if the hosted task was cancelled from outside.

        Args:
            key: What identifies equal streams; any hashable value. Streams and
                `run` calls with equal keys are independent of each other.
            fn: Returns the upstream async iterable, typically an async generator
                function; only the first consumer's ``fn`` and arguments are used.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            This caller's consumer of the shared stream.

        Raises:
            TypeError: At once, if ``key`` is not hashable.
        """
        try:
            hash(key)
        except TypeError as exc:
            raise unhashable_key(key, "Deduplicator.stream()", str(exc)) from None
        return SharedStream(
            key, functools.partial(self._join_stream, key, fn, args, kwargs), self._abandon_stream
        )

    def forget(self, key: Hashable) -> None:
        """Make the next call with ``key`` start a fresh execution; O(1).

        Drops ``key``'s cached result, and detaches its running execution if any:
        the callers already waiting still get its outcome, but new calls no longer
        join it, and its result is not cached. The same goes for ``key``'s stream.

        Args:
            key: The key to forget; forgetting an unknown key does nothing.

        Raises:
            TypeError: If ``key`` is not hashable.
        """
        try:
            hash(key)  # dict.pop() on an empty dict does not hash
        except TypeError as exc:
            raise unhashable_key(key, "Deduplicator.forget()", str(exc)) from None
        for flights, cache in ((self._flights, self._cache), (self._streams, self._stream_cache)):
            if cache is not None:
                cache.pop(key, None)
            flight = flights.pop(key, None)
            if flight is not None:
                flight.detached = True
                self._detached.add(flight)

    def _abandon_stream(self, flight: Flight) -> None:
        """A running stream's last consumer has left."""
        self._abandon(flight, self._streams)

    def _abandon(self, flight: Flight, flights: dict[Hashable, Flight]) -> None:
        """Nobody waits for ``flight`` any more: cancel it, unless told not to."""
        if not self._cancel_abandoned:
            return
        flight.abandoned = True
        if not flight.detached:
            flight.detached = True
            del flights[flight.key]
            self._detached.add(flight)
        if flight.started:
            flight.cancel()
        # Not started yet: _execute sees `abandoned` and returns before calling fn.

    async def _execute(
        self,
        flight: Flight,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        stream: bool = False,
    ) -> None:
        """The body of a hosted task: run ``fn`` once and hand its outcome to the waiters.

        The hosted task of `run` runs it directly; a stream's (`_host_stream`) runs it
        with ``stream=True``, with an ``fn`` that iterates the upstream into the shared
        buffer and returns that buffer: the stream's entry, cache and words in the log
        are then used instead of `run`'s. It never raises, except to let a
        cancellation from outside the Deduplicator propagate (a trio system task must
        not raise anything else).
        """
        try:
            if not flight.begin():
                if not flight.abandoned:  # cancelled from outside before its first step
                    self._fail_cancelled(flight, cause=None)
                return
            try:
                result = await flight.call(fn, args, kwargs)
            except BaseException as exc:
                if flight.abandoned:  # nobody waits: there is nobody to tell
                    if not flight.is_cancellation(exc):
                        _log_raised_when_abandoned(flight, exc, stream=stream)
                    return
                if flight.is_cancellation(exc):
                    self._fail_cancelled(flight, cause=exc)
                    raise
                self._fail(flight, exc)
            else:
                if flight.abandoned:
                    return
                flight.result = result
                cache = self._stream_cache if stream else self._cache
                if cache is not None and not flight.detached:
                    cache[flight.key] = result
        finally:
            self._settle(flight, self._streams if stream else self._flights)

    def _settle(self, flight: Flight, flights: dict[Hashable, Flight]) -> None:
        """The execution is over: drop its entry (in ``flights``) and wake its waiters."""
        flight.done = True
        if flight.detached:
            self._detached.discard(flight)
        else:
            del flights[flight.key]
        flight.wake()

    def _join_stream(
        self,
        key: Hashable,
        fn: Callable[..., AsyncIterable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Flight | None, list[Any]]:
        """Count a consumer in: the stream it joins or starts, and its chunk buffer.

        The flight is ``None`` for a replay of a completed stream from the cache.
        """
        self._calls += 1
        streams = self._streams
        flight = streams.get(key)
        if flight is not None:
            self._shared += 1
            flight.waiters += 1
            return flight, flight.result
        if self._stream_cache is not None:
            chunks = self._stream_cache.get(key)
            if chunks is not None:
                self._cache_hits += 1
                return None, chunks
        flight = new_flight(key)
        chunks = flight.result = []
        flight.waiters = 1
        self._executions += 1
        streams[key] = flight
        try:
            flight.start(self._host_stream, flight, fn, args, kwargs)
        except BaseException:
            del streams[key]
            raise
        return flight, chunks

    async def _host_stream(
        self,
        flight: Flight,
        fn: Callable[..., AsyncIterable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """The body of a stream's hosted task: iterate the upstream into the shared buffer.

        It is hosted by `_execute` as a `run` execution is, so like it this never raises,
        except to let a cancellation from outside the Deduplicator propagate. Once the
        outcome is published (the consumers woken, the key free for a new stream), it
        closes the upstream with ``aclose()``.
        """
        upstream: AsyncIterator[Any] | None = None
        max_chunks = self._max_chunks

        async def fill() -> list[Any]:
            nonlocal upstream
            chunks: list[Any] = flight.result
            upstream = aiter(fn(*args, **kwargs))
            async for chunk in upstream:
                if len(chunks) == max_chunks:
                    raise StreamTooLongError(flight.key, max_chunks)
                chunks.append(chunk)
                flight.notify()
            return chunks

        try:
            await self._execute(flight, fill, (), {}, stream=True)
        finally:
            if upstream is not None:
                # Settled, the flight is in none of the tables now: hold it again, so
                # that its task stays referenced while it closes the upstream.
                self._detached.add(flight)
                try:
                    await _close_upstream(flight, upstream)
                finally:
                    self._detached.discard(flight)

    def _fail(self, flight: Flight, error: BaseException) -> None:
        """Set the outcome to ``error`` and count it; log it if nobody waits to get it."""
        self._errors += 1
        flight.fail(error)
        if not flight.waiters:
            logger.warning(
                "the execution for key %s failed after every caller had left",
                reprlib.repr(flight.key),
                exc_info=error,
            )

    def _fail_cancelled(self, flight: Flight, cause: BaseException | None) -> None:
        """The hosted task was cancelled from outside: fail the callers still waiting.

        With nobody waiting (an execution kept running by ``cancel_abandoned=False``
        when the event loop shuts down, say) nothing failed that anyone asked for: it
        is logged at DEBUG level only, and not counted in ``errors``.
        """
        if not flight.waiters:
            logger.debug(
                "the execution for key %s was cancelled from outside while nobody waited",
                reprlib.repr(flight.key),
            )
            return
        error = DedupCancelledError(flight.key)
        error.__cause__ = cause
        self._fail(flight, error)


async def _close_upstream(flight: Flight, upstream: AsyncIterator[Any]) -> None:
    """``await upstream.aclose()`` if it has one (an ended async generator ignores it)."""
    aclose = getattr(upstream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except BaseException as exc:
        if flight.is_cancellation(exc):
            raise
        streams_logger.warning(
            "closing the upstream of the shared stream for key %s raised",
            reprlib.repr(flight.key),
            exc_info=exc,
        )


def _log_raised_when_abandoned(flight: Flight, error: BaseException, *, stream: bool) -> None:
    """Log ``error``, raised by an abandoned execution when it was cancelled.

    Through the logger of the module whose primitive it ran: ``botperf._dedup`` for
    `Deduplicator.run`, ``botperf._streams`` for a stream's upstream.
    """
    if stream:
        what, who, log = "the upstream of the shared stream", "consumer", streams_logger
    else:
        what, who, log = "the execution", "caller", logger
    log.warning(
        "%s for key %s, cancelled because every %s had left, raised instead of ending",
        what,
        reprlib.repr(flight.key),
        who,
        exc_info=error,
    )


class _DeduplicatedFunction(Protocol[P, R_co]):
    """An async function wrapped by `deduplicate`, with its signature kept."""

    @property
    def deduplicator(self) -> Deduplicator:
        """The `Deduplicator` behind this function."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...


class _DeduplicatedStreamFunction(Protocol[P, R_co]):
    """An async generator function wrapped by `deduplicate`, with its signature kept."""

    @property
    def deduplicator(self) -> Deduplicator:
        """The `Deduplicator` behind this function."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> SharedStream[R_co]: ...


class _Decorator(Protocol):
    # Async generator functions are commonly annotated as returning AsyncIterator.
    @overload
    def __call__(
        self, fn: Callable[P, AsyncIterator[T]], /
    ) -> _DeduplicatedStreamFunction[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> _DeduplicatedFunction[P, T]: ...


def unhashable_key(key: object, where: str, problem: str) -> TypeError:
    """The `TypeError` for a deduplication key that cannot be hashed."""
    return BotperfTypeError(
        f"{where}: the deduplication key {reprlib.repr(key)} is not hashable ({problem}); "
        "build the key from hashable values (str, int, tuple, frozenset), "
        "for example with @deduplicate(key=lambda prompt, model: (model, prompt))",
        key=key,
    )


def call_key(
    key: Callable[..., Hashable] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    where: str,
) -> Hashable:
    """Return the key of a decorated call: ``key(*args, **kwargs)``, or the arguments.

    Without ``key``, positional and keyword arguments count separately, as in
    `functools.lru_cache`. Shared by `deduplicate` and ``botperf.redis.deduplicate``.

    Raises:
        TypeError: If the key is unhashable; ``where`` names the decorated function.
    """
    result: Hashable
    if key is not None:
        result = key(*args, **kwargs)
    elif kwargs:
        result = (args, tuple(sorted(kwargs.items())))
    else:
        result = (args,)
    try:
        hash(result)  # here, so that the error can name the function
    except TypeError as exc:
        raise unhashable_key(result, where, str(exc)) from None
    return result


def deduplicate(
    *,
    key: Callable[..., Hashable] | None = None,
    ttl: float | None = None,
    max_cached: int = 1024,
    cancel_abandoned: bool = True,
    max_chunks: int = 10_000,
) -> _Decorator:
    """Decorate an async function so concurrent calls with an equal key run it once.

    Each decorated function gets its own `Deduplicator`, available as its
    ``deduplicator`` attribute. The function keeps its signature for type checkers.
    Applied to an async generator function (as told by `inspect.isasyncgenfunction`),
    it makes a function that returns a `SharedStream` (as `Deduplicator.stream` does):
    concurrent calls with an equal key share one iteration of the generator, and each
    caller gets every item. For other functions returning an async iterator, call
    `Deduplicator.stream` instead.

    Args:
        key: Called with the call's arguments, returns the deduplication key. By
            default the key is made of the arguments themselves, as
            `functools.lru_cache` does: positional and keyword arguments count
            separately, and ``1``, ``1.0`` and ``True`` are equal.
        ttl: As for `Deduplicator`.
        max_cached: As for `Deduplicator`.
        cancel_abandoned: As for `Deduplicator`.
        max_chunks: As for `Deduplicator`.

    Returns:
        The decorator.

    Raises:
        InvalidOptionError: At once, for an invalid option (see `Deduplicator`).
        TypeError: When the decorated function is called, if the key (by default
            its arguments) is not hashable.
    """
    dedup = Deduplicator(
        ttl=ttl, max_cached=max_cached, cancel_abandoned=cancel_abandoned, max_chunks=max_chunks
    )

    def decorator(fn: Callable[..., Any], /) -> Any:
        name = getattr(fn, "__qualname__", repr(fn))

        where = f"@deduplicate on {name}()"

        wrapper: Any
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> SharedStream[Any]:
                return dedup.stream(call_key(key, args, kwargs, where), fn, *args, **kwargs)

        else:

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await dedup.run(call_key(key, args, kwargs, where), fn, *args, **kwargs)

        wrapper.deduplicator = dedup
        return wrapper

    return cast(_Decorator, decorator)
