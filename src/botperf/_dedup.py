"""Single-flight deduplication of async calls: one execution per key, shared by every caller."""

from __future__ import annotations

import functools
import logging
import math
import reprlib
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast, final

from cachetools import TTLCache
from typing_extensions import ParamSpec

from ._exceptions import DedupCancelledError, DedupKeyError
from ._hosting import Flight, new_flight

__all__ = ["DedupStats", "Deduplicator", "deduplicate"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

_MISSING: Any = object()


@final
@dataclass(frozen=True, slots=True)
class DedupStats:
    """A snapshot of a :class:`Deduplicator`'s counters since it was created.

    Every call is counted exactly once as an execution, a shared call or a cache hit,
    so ``calls == executions + shared + cache_hits`` always holds, cancelled callers
    included.

    Attributes:
        calls: Calls of :meth:`Deduplicator.run` with a hashable key.
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

    The first call for a key starts an *execution* of ``fn`` in a task the
    Deduplicator hosts (not in the caller's task); calls with the same key that
    arrive while it runs wait for it; all of them get the same result object, or the
    same exception. Cancelling a caller affects only that caller. Once no caller
    waits any more, the execution is cancelled (unless ``cancel_abandoned=False``)
    and forgotten: the next call starts a fresh one. See the Deduplicator page of the
    docs for the timelines.

    Works under asyncio and trio. A Deduplicator is not thread-safe: use it from
    the tasks of one event loop at a time.

    Args:
        ttl: Seconds for which the result of a *successful* execution is also served to
            later calls with its key, from a cache; ``None`` (the default) caches
            nothing. Exceptions are never cached.
        max_cached: How many results the ``ttl`` cache holds at most (the least
            recently used go first); at least 1.
        cancel_abandoned: Whether to cancel an execution once every caller waiting
            for it has been cancelled. With ``False`` it runs to completion, new calls
            with its key join it, and a successful result is cached (with ``ttl``).

    Raises:
        ValueError: If ``ttl`` is not a positive finite number or ``None``, or if
            ``max_cached`` is below 1.
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
        "_shared",
    )

    def __init__(
        self,
        *,
        ttl: float | None = None,
        max_cached: int = 1024,
        cancel_abandoned: bool = True,
    ) -> None:
        if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
        if max_cached < 1:
            raise ValueError(f"max_cached must be an int of at least 1, not {max_cached!r}")
        self._cache: TTLCache[Hashable, Any] | None = (
            None if ttl is None else TTLCache(maxsize=max_cached, ttl=ttl)
        )
        self._cancel_abandoned = cancel_abandoned
        # The running executions that new callers can join, by key.
        self._flights: dict[Hashable, Flight] = {}
        # Executions no new caller can reach (forgotten, or abandoned and being
        # cancelled) but still running: held here so their tasks stay referenced.
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
        """How many keys have an execution running now that new calls would join."""
        return len(self._flights)

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
            DedupKeyError: If ``key`` is not hashable.
            DedupCancelledError: If the execution was cancelled from outside the
                Deduplicator while this call waited.
            BaseException: Whatever ``fn`` raised, re-raised to every caller waiting
                at that moment (the same object, with ``fn``'s traceback each time).
        """
        flights = self._flights
        try:
            flight = flights.get(key)
        except TypeError as exc:
            raise DedupKeyError(key, "Deduplicator.run()", str(exc)) from None
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
            flights[key] = flight
            try:
                flight.start(self._execute, flight, fn, args, kwargs)
            except BaseException:
                del flights[key]
                raise
        else:
            self._shared += 1
        if not flight.done:
            flight.waiters += 1
            try:
                await flight.wait()
            finally:
                flight.waiters -= 1
                if not flight.waiters and not flight.done:
                    self._abandon(flight)
        error = flight.error
        if error is not None:
            # The same object is raised to every waiter; resetting its traceback keeps it
            # fn's own plus this caller's frames, instead of growing with each re-raise.
            raise error.with_traceback(flight.traceback)
        return cast(T, flight.result)

    def forget(self, key: Hashable) -> None:
        """Make the next call with ``key`` start a fresh execution; O(1).

        Drops ``key``'s cached result, and detaches its running execution if any:
        the callers already waiting still get its outcome, but new calls no longer
        join it, and its result is not cached.

        Args:
            key: The key to forget; forgetting an unknown key does nothing.

        Raises:
            DedupKeyError: If ``key`` is not hashable.
        """
        try:
            hash(key)  # dict.pop() on an empty dict does not hash
        except TypeError as exc:
            raise DedupKeyError(key, "Deduplicator.forget()", str(exc)) from None
        flight = self._flights.pop(key, None)
        if self._cache is not None:
            self._cache.pop(key, None)
        if flight is not None:
            flight.detached = True
            self._detached.add(flight)

    def _abandon(self, flight: Flight) -> None:
        """Nobody waits for ``flight`` any more: cancel it, unless told not to."""
        if not self._cancel_abandoned:
            return
        flight.abandoned = True
        if not flight.detached:
            flight.detached = True
            del self._flights[flight.key]
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
    ) -> None:
        """The body of the hosted task: run ``fn`` once and hand its outcome to the waiters.

        It never raises, except to let a cancellation from outside the Deduplicator
        propagate (a trio system task must not raise anything else).
        """
        try:
            if not flight.begin():
                if not flight.abandoned:  # cancelled from outside before its first step
                    self._fail(flight, DedupCancelledError(flight.key), cause=None)
                return
            try:
                result = await flight.call(fn, args, kwargs)
            except BaseException as exc:
                if flight.abandoned:  # nobody waits: there is nobody to tell
                    if not flight.is_cancellation(exc):
                        logger.warning(
                            "the execution for key %s, cancelled because every caller had "
                            "left, raised instead of ending",
                            reprlib.repr(flight.key),
                            exc_info=exc,
                        )
                    return
                if flight.is_cancellation(exc):
                    self._fail(flight, DedupCancelledError(flight.key), cause=exc)
                    raise
                self._fail(flight, exc, cause=None)
            else:
                if flight.abandoned:
                    return
                flight.result = result
                if self._cache is not None and not flight.detached:
                    self._cache[flight.key] = result
        finally:
            self._settle(flight)

    def _settle(self, flight: Flight) -> None:
        """The execution is over: drop its entry and wake its waiters."""
        flight.done = True
        if flight.detached:
            self._detached.discard(flight)
        else:
            del self._flights[flight.key]
        flight.wake()

    def _fail(self, flight: Flight, error: BaseException, *, cause: BaseException | None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self._errors += 1
        flight.error = error
        flight.traceback = error.__traceback__
        if not flight.waiters:
            logger.warning(
                "the execution for key %s failed after every caller had left",
                reprlib.repr(flight.key),
                exc_info=error,
            )


class _DeduplicatedFunction(Protocol[P, R_co]):
    """An async function wrapped by :func:`deduplicate`, with its signature kept."""

    @property
    def deduplicator(self) -> Deduplicator:
        """The :class:`Deduplicator` behind this function."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...


class _Decorator(Protocol):
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> _DeduplicatedFunction[P, T]: ...


def deduplicate(
    *,
    key: Callable[..., Hashable] | None = None,
    ttl: float | None = None,
    max_cached: int = 1024,
    cancel_abandoned: bool = True,
) -> _Decorator:
    """Decorate an async function so concurrent calls with an equal key run it once.

    Each decorated function gets its own :class:`Deduplicator`, available as its
    ``deduplicator`` attribute. The function keeps its signature for type checkers.

    Args:
        key: Called with the call's arguments, returns the deduplication key. By
            default the key is made of the arguments themselves, as
            :func:`functools.lru_cache` does: positional and keyword arguments count
            separately, and ``1``, ``1.0`` and ``True`` are equal.
        ttl: As for :class:`Deduplicator`.
        max_cached: As for :class:`Deduplicator`.
        cancel_abandoned: As for :class:`Deduplicator`.

    Returns:
        The decorator.

    Raises:
        ValueError: At once, for an invalid option (see :class:`Deduplicator`).
        DedupKeyError: When the decorated function is called, if the key (by default
            its arguments) is not hashable.
    """
    dedup = Deduplicator(ttl=ttl, max_cached=max_cached, cancel_abandoned=cancel_abandoned)

    def decorator(fn: Callable[P, Awaitable[T]], /) -> _DeduplicatedFunction[P, T]:
        name = getattr(fn, "__qualname__", repr(fn))

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            call_key: Hashable
            if key is not None:
                call_key = key(*args, **kwargs)
            elif kwargs:
                call_key = (args, tuple(sorted(kwargs.items())))
            else:
                call_key = (args,)
            try:
                hash(call_key)  # here, so that the error can name the function
            except TypeError as exc:
                raise DedupKeyError(call_key, f"@deduplicate on {name}()", str(exc)) from None
            return await dedup.run(call_key, fn, *args, **kwargs)

        wrapper.deduplicator = dedup  # type: ignore[attr-defined]
        return cast(_DeduplicatedFunction[P, T], wrapper)

    return decorator
