"""Where a `botperf.Deduplicator` execution runs, one small class per event loop.

An execution must belong to no single caller, so it runs in a task that the
Deduplicator hosts itself, and callers only wait for its outcome:

* asyncio: a task of its own, started eagerly on Python 3.12+ (``eager_start=True``);
  before 3.12 a ``Task`` subclass that, cancelled before its first step, still runs
  its coroutine. The flight keeps a strong reference to the task until it ends
  (asyncio itself holds only weak ones). Each waiter awaits a future of its own, so
  cancelling one waiter never touches the others or the task. An abandoned execution
  is cancelled with ``Task.cancel()``, asyncio's native cancellation, as
  ``asyncio.timeout()`` and ``asyncio.TaskGroup`` do.
* trio: a system task (``trio.lowlevel.spawn_system_task``), owned by trio's system
  nursery and run in a copy of the caller's context. It runs ``fn`` inside a
  ``trio.CancelScope`` that an abandoned execution cancels, and it never lets an
  exception escape (that would crash the whole run). Waiters wait on one
  ``trio.Event``.

A shared stream (``_streams``) is hosted the same way: its flight's task iterates the
upstream, and its consumers wait between chunks with `Flight.wait_for_news`,
woken by `Flight.notify` at each chunk and by `Flight.wake` at the end
(asyncio: the same futures as ``run()``'s callers, one per waiting consumer; trio: a
``ParkingLot``), never in a nursery or cancel scope of their own.

The backend is told apart by `new_flight` with `asyncio.current_task`:
a running asyncio task means asyncio, anything else means trio. That is several times
cheaper than ``anyio.lowlevel.current_token()`` or ``sniffio.current_async_library()``,
and it is right in trio's guest mode on an asyncio loop too, where trio tasks run in
loop callbacks, not in asyncio tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

__all__ = ["Flight", "new_flight"]


if sys.version_info >= (3, 12):

    def _create_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], flight: Flight
    ) -> asyncio.Task[None]:
        # Eager start runs the task's first step at once, inside the caller's call: an
        # fn that returns without suspending costs no scheduling round trip at all, and
        # the task has started before anything else could cancel it.
        return asyncio.Task(coro, loop=loop, eager_start=True)

else:

    class _HostedTask(asyncio.Task):  # type: ignore[type-arg]
        """A task whose cancellation before its first step still runs its coroutine.

        asyncio never runs the coroutine of a task cancelled before its first step,
        not even its ``finally``, so the waiters would never hear of it. This task
        instead lets the coroutine start and see ``flight.cancelled_before_start``: it
        fails the waiters with DedupCancelledError and ends (normally, not as
        cancelled). Overriding ``cancel`` costs nothing per call, unlike a done
        callback.
        """

        __slots__ = ("flight",)

        flight: Flight

        def cancel(self, msg: Any = None) -> bool:
            if self.flight.started:
                return super().cancel(msg)
            self.flight.cancelled_before_start = True
            return True

    def _create_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], flight: Flight
    ) -> asyncio.Task[None]:
        task = _HostedTask(coro, loop=loop)
        task.flight = flight
        return task


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement
_BASE_EXCEPTION_SIZE = BaseException.__basicsize__


def _has_plain_layout(cls: type[BaseException]) -> bool:
    """Whether all of an instance's state is ``args``, ``__dict__`` and the dunder links.

    True for exception classes written in Python on top of `Exception` (``httpx``,
    ``ollama`` and most libraries' errors) and for builtins without fields of their own
    (``ValueError``); false when a builtin base keeps C fields (``OSError.errno``,
    ``StopIteration.value``), when ``__slots__`` add storage, or with a ``__new__``.
    """
    weakref_offset = cls.__weakrefoffset__  # > 0: a weakref slot ends the layout (< 3.12)
    end = weakref_offset if weakref_offset > 0 else cls.__basicsize__
    return end == _BASE_EXCEPTION_SIZE and not any(
        "__new__" in vars(base) for base in cls.__mro__ if base.__flags__ & _HEAP_TYPE
    )


def _copy_error(error: BaseException) -> BaseException | None:
    """A shallow copy of ``error`` of the same type, args and attributes, or ``None``.

    A plain exception (see `_has_plain_layout`) is copied without calling its
    ``__init__`` again; any other goes through `copy.copy` (its ``__reduce__``, which
    calls the constructor with ``args``) and is refused unless that gives back the same
    type and args: a constructor that builds its message from other arguments would
    otherwise make a different exception. Notes are copied, not shared.
    """
    cls = type(error)
    try:
        if _has_plain_layout(cls):
            duplicate = BaseException.__new__(cls, *error.args)
            duplicate.__dict__.update(error.__dict__)
        else:
            duplicate = copy.copy(error)
            if type(duplicate) is not cls or duplicate.args != error.args:
                return None
        notes = getattr(error, "__notes__", None)
        if isinstance(notes, list):
            duplicate.__dict__["__notes__"] = list(notes)
    except Exception:  # whatever a constructor or an __eq__ may raise: share instead
        return None
    duplicate.__cause__ = error.__cause__
    duplicate.__suppress_context__ = error.__suppress_context__
    return duplicate


class Flight:
    """One execution of a key: its task, its waiters and, once done, its outcome.

    The Deduplicator reads and writes the plain attributes; the methods are what
    differs between event loops. For a shared stream, ``result`` is the chunk buffer
    (a list, from the start) and ``waiters`` counts the consumers.
    """

    __slots__ = (
        "abandoned",
        "cancelled_before_start",
        "context",
        "detached",
        "done",
        "error",
        "key",
        "result",
        "started",
        "traceback",
        "waiters",
    )

    def __init__(self, key: object) -> None:
        self.key = key
        self.started = False
        self.done = False
        # No new caller can reach the flight any more: it was forgotten or abandoned.
        self.detached = False
        # Every waiter left and the execution is being cancelled.
        self.abandoned = False
        # Its task was cancelled from outside before its first step (asyncio < 3.12).
        self.cancelled_before_start = False
        self.result: Any = None
        self.error: BaseException | None = None
        # fn's traceback and context, as they were when it raised: raising the error in a
        # caller changes them on the object.
        self.traceback: Any = None
        self.context: BaseException | None = None
        # How many callers wait for the outcome now; kept by the Deduplicator.
        self.waiters = 0

    def fail(self, error: BaseException) -> None:
        """Set the outcome to ``error``, as raised by the execution."""
        self.error = error
        self.traceback = error.__traceback__
        self.context = error.__context__

    def error_for_caller(self) -> BaseException:
        """The exception for one caller to raise; call it after leaving ``waiters``.

        Each caller gets an exception object of its own, so that what one caller's
        raise and handlers do to it (``__context__``, ``__traceback__``, notes) never
        shows in another's: the last caller to leave gets the very object the
        execution raised, the others shallow copies of it made before (see
        `_copy_error`), each with the execution's traceback, cause and context. An
        exception that cannot be copied faithfully is shared, as `asyncio.Future`
        shares it, with its traceback and context reset before each raise.
        """
        error = self.error
        assert error is not None
        if self.waiters:
            duplicate = _copy_error(error)
            if duplicate is not None:
                duplicate.__context__ = self.context
                return duplicate.with_traceback(self.traceback)
        error.__context__ = self.context
        return error.with_traceback(self.traceback)

    def begin(self) -> bool:
        """Mark the execution started, from its task; ``False`` if cancelled before that."""
        self.started = True
        return not (self.abandoned or self.cancelled_before_start)

    def start(self, async_fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run ``async_fn(*args)`` in a new task that no caller owns.

        On Python 3.12+ under asyncio the task starts eagerly, so the flight may
        already be done when this returns.
        """
        raise NotImplementedError

    def is_cancellation(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this event loop's cancellation exception."""
        raise NotImplementedError

    def call(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        """Call ``fn`` in the hosted task so that `cancel` can cancel it."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Cancel the running execution (only called once it has started)."""
        raise NotImplementedError

    def wait(self) -> Awaitable[None]:
        """Something for one caller to await; it returns once the flight is done."""
        raise NotImplementedError

    def unwait(self, waiter: Awaitable[None]) -> None:
        """Forget ``waiter``, from `wait` or `wait_for_news`, left unwoken; O(1).

        For a caller cancelled while it waited. Nothing to do on trio, whose waits
        remove themselves when cancelled, nor for a waiter woken already.
        """

    def wake(self) -> None:
        """Wake every waiter, of `wait` and `wait_for_news`: the outcome is set."""
        raise NotImplementedError

    def wait_for_news(self) -> Awaitable[None]:
        """For a stream's consumer: something that returns at the next `notify` or `wake`."""
        raise NotImplementedError

    def notify(self) -> None:
        """Wake every `wait_for_news` waiter: a new chunk; O(waiters)."""
        raise NotImplementedError


class _AsyncioFlight(Flight):
    __slots__ = ("futures", "loop", "task")

    def __init__(self, key: object, loop: asyncio.AbstractEventLoop) -> None:
        # Flight.__init__'s assignments, repeated here: one flight per call that
        # misses, and a super() call would add to every one of them.
        self.key = key
        self.started = False
        self.done = False
        self.detached = False
        self.abandoned = False
        self.cancelled_before_start = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.traceback: Any = None
        self.context: BaseException | None = None
        self.waiters = 0
        self.loop = loop
        # One future per waiter, woken first come, first served (a dict keeps the order
        # and lets a cancelled waiter's future go at once, so a long execution holds
        # the futures of the callers waiting now, not of every caller it ever had).
        self.futures: dict[asyncio.Future[None], None] = {}
        self.task: asyncio.Task[None] | None = None

    def start(self, async_fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        self.task = _create_task(self.loop, async_fn(*args), self)

    def is_cancellation(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncio.CancelledError)

    def call(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        return fn(*args, **kwargs)

    def cancel(self) -> None:
        assert self.task is not None
        self.task.cancel()

    def wait(self) -> Awaitable[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self.futures[future] = None
        return future

    def unwait(self, waiter: Awaitable[None]) -> None:
        self.futures.pop(cast("asyncio.Future[None]", waiter), None)

    def wake(self) -> None:
        futures = self.futures
        if futures:
            self.futures = {}  # a woken future needs no unwait(); a new wait() gets a new one
            for future in futures:
                if not future.done():  # cancelled, its waiter not yet resumed to unwait it
                    future.set_result(None)

    # The futures serve run()'s callers and a stream's consumers alike: a consumer waits
    # for the next chunk as a caller waits for the outcome.
    wait_for_news = wait
    notify = wake


class _TrioFlight(Flight):
    __slots__ = ("event", "lot", "scope")

    def __init__(self, key: object) -> None:
        import trio  # imported only once a trio loop runs: trio is optional

        super().__init__(key)
        self.event = trio.Event()
        self.scope: trio.CancelScope | None = None
        # A shared stream's consumers park here between chunks; created on first use.
        self.lot: trio.lowlevel.ParkingLot | None = None

    def start(self, async_fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        import trio

        trio.lowlevel.spawn_system_task(
            async_fn,
            *args,
            name="botperf.Deduplicator execution",
            context=contextvars.copy_context(),
        )

    def is_cancellation(self, exc: BaseException) -> bool:
        import trio

        return isinstance(exc, trio.Cancelled)

    def call(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        return self._call_in_scope(fn, args, kwargs)

    async def _call_in_scope(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        import trio

        with trio.CancelScope() as self.scope:
            return await fn(*args, **kwargs)
        return None  # cancelled by cancel(): the flight is abandoned, nobody reads this

    def cancel(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    def wait(self) -> Awaitable[None]:
        return self.event.wait()

    def wake(self) -> None:
        self.event.set()
        self.notify()

    def wait_for_news(self) -> Awaitable[None]:
        lot = self.lot
        if lot is None:
            import trio

            lot = self.lot = trio.lowlevel.ParkingLot()
        return lot.park()

    def notify(self) -> None:
        if self.lot is not None:
            self.lot.unpark_all()


def new_flight(key: object) -> Flight:
    """A flight for ``key`` on the event loop running the current task.

    Raises:
        RuntimeError: If neither an asyncio task nor a trio task is running.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop running in this thread
        task = None
    if task is not None:
        return _AsyncioFlight(key, task.get_loop())
    try:
        import trio

        trio.lowlevel.current_task()
    except (ImportError, RuntimeError) as exc:
        raise RuntimeError(
            "Deduplicator.run() must be awaited in a task running under asyncio or trio"
        ) from exc
    return _TrioFlight(key)
