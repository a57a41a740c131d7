"""Timing and profiling helpers: `timed` and `profile`.

Both are classes spelled in lower case, like `contextlib.suppress`, because
they read as verbs where they are used: ``with timed(...)``, ``@profile(...)``.
"""

from __future__ import annotations

import cProfile
import functools
import inspect
import logging
import math
import os
import pstats
import sys
import threading
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TextIO, TypeVar, cast, final

from typing_extensions import Self

from ._exceptions import BotperfRuntimeError, InvalidOptionError
from ._latency import _DEFAULT_RECORDER, LatencyRecorder
from ._options import check_int_option

__all__ = ["EventRecorder", "profile", "timed"]

logger = logging.getLogger(__name__)

# Whether a botperf profile is running in the thread: cProfile allows one per thread.
_profiling_thread = threading.local()

P = ParamSpec("P")
R = TypeVar("R")

# timed._start when no block is being timed: a float no clock reading can equal, so the
# hot path needs neither a None check nor a typing.cast() call (a function call at run time).
_IDLE = -math.inf

#: The orders `profile` accepts, as `pstats.Stats.sort_stats` names them.
SORT_KEYS = frozenset(pstats.Stats.sort_arg_dict_default)


class EventRecorder(Protocol):
    """What ``timed(..., metrics=...)`` needs: a `BatchMetricsWriter`, say."""

    def record(self, event: str, /, **fields: object) -> None:
        """Record one event with its fields; must not block."""


@final
class timed:
    """Time a function or a block and record the duration under ``name``.

    Use it as a decorator of sync or async functions (the decorated function keeps its
    signature for type checkers; whether it is a coroutine function is decided once, at
    decoration), or as a ``with`` / ``async with`` block. Each timing is measured with
    `time.perf_counter` and recorded in seconds into ``recorder``; a timing whose
    function or block raised (anything, cancellation included) is recorded too, counted
    in `LatencyStats.errors`, and the exception
    propagates unchanged.

    With ``metrics``, each timing is also recorded as one event named ``name`` with the
    fields ``duration_ms`` (float, milliseconds) and ``error`` (bool), e.g.
    ``{"ts": ..., "event": "ollama.chat", "duration_ms": 812.5, "error": false}``, which
    ``botperf report`` tabulates. An exception from ``metrics.record`` is logged and
    does not disturb the timed code.

    A decorated function may run concurrently. A ``timed`` object used as a context
    manager times one block at a time: write ``with timed(...)`` at each block.
    Generator functions are not timed usefully by the decorator (it would time only the
    creation of the generator): time the loop that consumes them with a block instead.

    Cost: two `time.perf_counter` reads and one `LatencyRecorder.observe` per
    timing; ``with timed(...)`` also builds the object. The Performance page has the
    measured figures.

    Args:
        name: What is timed, e.g. ``"ollama.chat"``; the key in the recorder's summary.
        recorder: Where durations go; `LatencyRecorder.default()`, the process-wide
            recorder, when ``None``.
        metrics: An optional `EventRecorder` (anything with
            ``record(event, /, **fields)``) that also gets each timing as an event.

    Attributes:
        elapsed: The duration of the last block timed with ``with``, in seconds;
            ``None`` before a block has finished.

    Raises:
        RuntimeError: If the object is entered as a context manager while it is
            already timing a block.
    """

    __slots__ = ("_metrics", "_name", "_recorder", "_start", "elapsed")

    def __init__(
        self,
        name: str,
        *,
        recorder: LatencyRecorder | None = None,
        metrics: EventRecorder | None = None,
    ) -> None:
        self._name = name
        self._recorder = _DEFAULT_RECORDER if recorder is None else recorder
        self._metrics = metrics
        self._start = _IDLE
        self.elapsed: float | None = None

    @property
    def name(self) -> str:
        """What is timed."""
        return self._name

    @property
    def recorder(self) -> LatencyRecorder:
        """The recorder durations go to."""
        return self._recorder

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Return ``func`` wrapped so that each call is timed; sync or async alike."""
        finish = _finisher(self._name, self._recorder, self._metrics)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                start = perf_counter()
                try:
                    result = await func(*args, **kwargs)
                except BaseException:
                    finish(perf_counter() - start, error=True)
                    raise
                finish(perf_counter() - start, error=False)
                return result

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            start = perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException:
                finish(perf_counter() - start, error=True)
                raise
            finish(perf_counter() - start, error=False)
            return result

        return wrapper

    def __enter__(self) -> Self:
        if self._start != _IDLE:
            raise _in_use("timed", self._name)
        self._start = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        seconds = perf_counter() - self._start
        self._start = _IDLE
        self.elapsed = seconds
        error = exc_type is not None
        self._recorder.observe(self._name, seconds, error=error)
        if self._metrics is not None:
            _record_event(self._metrics, self._name, seconds, error=error)

    # The async protocol repeats the sync bodies: a call from one to the other would add
    # a tenth to the cost of every async block.
    async def __aenter__(self) -> Self:
        if self._start != _IDLE:
            raise _in_use("timed", self._name)
        self._start = perf_counter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        seconds = perf_counter() - self._start
        self._start = _IDLE
        self.elapsed = seconds
        error = exc_type is not None
        self._recorder.observe(self._name, seconds, error=error)
        if self._metrics is not None:
            _record_event(self._metrics, self._name, seconds, error=error)

    def __repr__(self) -> str:
        return f"timed({self._name!r}, recorder={self._recorder!r})"


def _in_use(kind: str, name: str) -> RuntimeError:
    """The error for a `timed` or `profile` object entered again before it exited."""
    return BotperfRuntimeError(
        f"{kind}({name!r}) is already timing a block: one object times one block at a "
        f"time; call {kind}(...) afresh for each block (as in `with {kind}(...):`), "
        "or use it as a decorator, which is safe for concurrent calls",
        name=name,
    )


class _Finish(Protocol):
    def __call__(self, seconds: float, *, error: bool) -> None: ...


def _finisher(name: str, recorder: LatencyRecorder, metrics: EventRecorder | None) -> _Finish:
    # Built once per decorated function, so each call makes one call with no branching.
    observe = recorder.observe
    if metrics is None:
        return functools.partial(observe, name)

    def finish(seconds: float, *, error: bool) -> None:
        observe(name, seconds, error=error)
        _record_event(metrics, name, seconds, error=error)

    return finish


def _record_event(metrics: EventRecorder, name: str, seconds: float, *, error: bool) -> None:
    try:
        metrics.record(name, duration_ms=seconds * 1000.0, error=error)
    except Exception:
        logger.exception("timed(%r) could not record its timing in %r", name, metrics)


def _check_sort(sort: object) -> str:
    if not isinstance(sort, str) or sort not in SORT_KEYS:
        raise InvalidOptionError("profile", "sort", sort, f"one of {', '.join(sorted(SORT_KEYS))}")
    return sort


@final
class profile:
    """Profile a block (or each call of a function) with `cProfile` and report it.

    On exit, even when the block raised, the profile is written to ``path`` (if given;
    open it later with `pstats.Stats`, ``python -m pstats`` or snakeviz) and the
    ``top`` most expensive functions by ``sort`` are printed to ``stream``. The
    collected `pstats.Stats` stays available as `stats`.

    Used as a decorator, each call is profiled on its own and overwrites ``path``. For
    an async function, cProfile sees the whole thread, so the profile also holds what
    other tasks ran while the call awaited.

    cProfile allows one active profiler per thread (and, from Python 3.12, one per
    process). A call or block that starts while another profile is active in its thread,
    such as a second call of a decorated coroutine function while the first awaits, or
    a profile nested in another, runs unprofiled: it is counted in `skipped`, the
    first such skip of this object is logged as a warning (logger
    ``botperf._profiling``), and it writes and prints nothing; the profile already
    running goes on undisturbed. The same holds when ``cProfile.Profile.enable()``
    refuses because another tool holds the profiler (Python 3.12 and later). To read
    `skipped` of a decorator, keep the object: ``p = profile(); handler = p(handler)``.

    Args:
        path: The ``.prof`` file to write, or ``None`` to only print.
        top: How many functions to print; 0 prints nothing.
        sort: The order, any key of `pstats.Stats.sort_stats`: ``"cumulative"``
            (time in a function and everything it calls), ``"tottime"`` (in the
            function itself), ``"calls"``, ...
        stream: Where to print; `sys.stdout` (looked up at exit) when ``None``.

    Attributes:
        stats: The statistics of the last profiled block or call, ``None`` before one
            finished.
        skipped: Blocks or calls that ran unprofiled because another profile was active.

    Raises:
        InvalidOptionError: If ``top`` is not an int of at least 0, or ``sort`` is not
            a pstats sort key (also a ``ValueError`` and a ``TypeError``).
        RuntimeError: If the object is entered while it is already profiling.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        top: int = 20,
        sort: str = "cumulative",
        stream: TextIO | None = None,
    ) -> None:
        self._top = check_int_option("profile", "top", top, minimum=0)
        self._sort = _check_sort(sort)
        self._path = None if path is None else os.fspath(path)
        self._stream = stream
        self._active = False
        self._profiler: cProfile.Profile | None = None
        self._skip_lock = threading.Lock()
        self.stats: pstats.Stats | None = None
        self.skipped = 0

    def __enter__(self) -> Self:
        if self._active:
            raise _in_use("profile", str(self._path))
        self._active = True
        self._profiler = self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        profiler, self._profiler = self._profiler, None
        self._active = False
        self._finish(profiler)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Return ``func`` wrapped so that each call is profiled and reported."""
        start, finish = self._start, self._finish
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                profiler = start()
                try:
                    return await func(*args, **kwargs)
                finally:
                    finish(profiler)

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            profiler = start()
            try:
                return func(*args, **kwargs)
            finally:
                finish(profiler)

        return wrapper

    def _start(self) -> cProfile.Profile | None:
        """Start profiling this thread; ``None`` (a counted skip) if a profile is active."""
        if getattr(_profiling_thread, "active", False):
            self._skip("another botperf profile is active in this thread")
            return None
        profiler = cProfile.Profile()
        try:
            profiler.enable()
        except ValueError as exc:  # Python 3.12+: "Another profiling tool is already active"
            self._skip(str(exc))
            return None
        _profiling_thread.active = True
        return profiler

    def _finish(self, profiler: cProfile.Profile | None) -> None:
        """Stop ``profiler``, then write and print its profile; nothing for a skip."""
        if profiler is None:
            return
        profiler.disable()
        _profiling_thread.active = False
        if self._path is not None:
            profiler.dump_stats(self._path)
        stream = sys.stdout if self._stream is None else self._stream
        stats = pstats.Stats(profiler, stream=stream)
        self.stats = stats
        if self._top:
            where = f"; the full profile is in {self._path}" if self._path else ""
            print(f"botperf.profile: top {self._top} functions by {self._sort}{where}", file=stream)
            stats.sort_stats(self._sort).print_stats(self._top)

    def _skip(self, reason: str) -> None:
        with self._skip_lock:
            self.skipped += 1
            first = self.skipped == 1
        if first:
            logger.warning(
                "%r: a call or block ran unprofiled because it overlapped another profile "
                "(%s; cProfile allows one at a time per thread). Counted in .skipped; this "
                "warning is given once per profile object.",
                self,
                reason,
            )

    def __repr__(self) -> str:
        return f"profile({self._path!r}, top={self._top!r}, sort={self._sort!r})"
